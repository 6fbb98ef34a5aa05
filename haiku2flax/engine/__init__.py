"""The rewrite engine: no jax, flax or haiku import happens here."""

from .notes import Note, Outcome
from .pipeline import Conversion, ConversionError, convert_source

__all__ = ["Conversion", "ConversionError", "Note", "Outcome", "convert_source"]
