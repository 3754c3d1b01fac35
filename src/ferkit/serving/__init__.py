"""Outside the pipeline: `fer predict` on photos (face detection, any model file) and `fer export --onnx`."""
