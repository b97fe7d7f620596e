"""Fitted, invertible preprocessing (fit / transform / inverse_transform, serialisable)."""
