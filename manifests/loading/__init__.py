"""Loading base.yaml, workflows.yaml and the workflow graphs into resolved `WorkflowManifest`s.

`load_manifests` is the way in; each module below it holds one kind of reading or checking.
"""

from manifests.loading.directories import LoadResult, load_manifests

__all__ = ["LoadResult", "load_manifests"]
