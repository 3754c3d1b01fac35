"""Stages `synth` and `preprocess`: the embedded synthetic set, and FER-2013 (CSV or image folders) to split arrays."""
