"""Stage `evaluate`: scores, per-class reports and figures for each trained model."""
