"""I/O the activities share: the output store and safe outbound URLs."""
