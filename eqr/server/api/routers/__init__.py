"""One router per resource: solve (+batch), jobs, models, and the operational endpoints."""
