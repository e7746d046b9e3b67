"""HTTP layer: controllers parse requests, call services and shape responses."""
