"""One APIRouter per resource: generate, tasks, workflows, health."""
