"""Stages `train_basic` and `train_vgg`: the batched loader and the resumable training loop."""
