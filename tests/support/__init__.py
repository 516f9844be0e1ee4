"""Shared test support: real components (control plane, MLflow, processes) for every test tier."""
