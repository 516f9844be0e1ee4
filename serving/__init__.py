"""mlrollout serving: a fast, strict, observable inference server for MLflow models."""

__version__ = "0.1.0"
