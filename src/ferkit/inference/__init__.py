"""From pixels to probabilities: loading a model, scoring faces (TTA, temperature), finding faces and
following them through a video. Evaluation and serving both build on it; it imports neither."""
