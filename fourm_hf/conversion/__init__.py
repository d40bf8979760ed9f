"""Conversion of official apple/ml-4m checkpoints (4M models and VQ models) into this package's layout."""
