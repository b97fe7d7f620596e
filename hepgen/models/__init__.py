"""Generative models: ``blocks`` holds reusable layers, ``assemblies`` the task models."""
