"""Which embedding column a node belongs to, for error messages (and later the identify_columns pass)."""

from __future__ import annotations

import functools
import re

from .graph import Graph
from .loader import Feature, parse_tensor_name

# Scopes feature-column layers put each column's ops under: .../dense_features/<col>_embedding/...
_SCOPE = re.compile(r"(?:^|/)(?:dense_features(?:_\d+)?|input_layer|sequence_features)/([^/]+)/")


class ColumnResolver:
    def __init__(self, graph: Graph, features: list[Feature]) -> None:
        self.graph = graph
        self._feature_of = {}
        for f in features:
            for t in f.tensors.values():
                self._feature_of[parse_tensor_name(t)[0]] = f.name

    @functools.lru_cache(maxsize=None)
    def __call__(self, node_name: str) -> str | None:
        m = _SCOPE.search(node_name)
        if m:
            return m.group(1)
        feats = {self._feature_of[n] for n in self.graph.ancestors([node_name]) | {node_name}
                 if n in self._feature_of}
        if len(feats) == 1:
            return next(iter(feats))
        return None
