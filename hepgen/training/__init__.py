"""Training: Lightning modules and callbacks, kept apart from the networks."""
