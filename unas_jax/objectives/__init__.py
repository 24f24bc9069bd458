"""The search objectives: training, validation and generalisation-gap losses (docs/design.md section 3)."""
