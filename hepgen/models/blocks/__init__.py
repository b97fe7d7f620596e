"""Reusable network building blocks (attention, EPiC, flows, time embeddings, losses)."""
