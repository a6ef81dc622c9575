"""Model files on a GPU worker: downloads by URL, the disk cache they live in, and the inventory
of what is on disk (docs/models.md)."""
