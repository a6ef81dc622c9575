"""Workflow manifests (base.yaml, workflows.yaml) and the registry that reads them."""
