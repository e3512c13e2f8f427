"""A corpus of TensorFlow graphs built the ways users build them (tests/corpus/<route>.py, one module per API
route), with the harness that runs each in TensorFlow and through recom_tvm (imported and optimized)."""

from __future__ import annotations

from . import tf1_feature_columns, tf2_feature_columns, tf_lookup, tf_sparse, tf_strings  # noqa: F401  (registration)
from .registry import ENTRIES, ROUTES, Entry

__all__ = ["ENTRIES", "ROUTES", "Entry"]
