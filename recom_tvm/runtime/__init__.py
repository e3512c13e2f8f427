"""Serving side: runs exported models with the TVM runtime, numpy and the string hash only.

Never imports the frontend, passes, shapes, schedules, TensorFlow or SymEngine.
"""

from .compiled_model import CompiledModel, load
from .keyed_jagged import KeyedJagged
from .spec import InputSpec

__all__ = ["CompiledModel", "InputSpec", "KeyedJagged", "load"]
