"""Datasets. `catalog` and `idx` are torch-free; `sources` builds the training-time batches."""
