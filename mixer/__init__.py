"""mixer: a Mixer-style policy and telemetry service."""

__version__ = "0.1.0"
__all__ = ["__version__"]
