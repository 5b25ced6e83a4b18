"""Digital phantoms with analytic ground truth, for tests and validation runs."""
