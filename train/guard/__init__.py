"""CrossGuard models, training, calibration and evaluation."""
