"""Rain-threshold calibration: catalogue importers, day table, calibration, validation, figures."""
