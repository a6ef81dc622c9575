"""GenerationWorkflow's activities: prepare, execute, control, webhooks, image uploads."""
