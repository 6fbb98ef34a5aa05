"""haiku2flax: migrate Haiku code to Flax Linen or NNX, and prove the rewrite computes the same function."""

from .engine import Conversion, ConversionError, convert_source

__version__ = "0.1.0"

__all__ = ["Conversion", "ConversionError", "convert_source", "convert_params", "verify"]


def __getattr__(name: str) -> object:
    # The harness imports jax, flax and haiku: load it only when asked for.
    if name in ("verify", "convert_params"):
        from . import harness

        return getattr(harness, name)
    raise AttributeError(name)
