"""The networks, their input normalisation and their checkpoints: shared by training, evaluation and serving."""
