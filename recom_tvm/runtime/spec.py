"""The serving spec of a compiled model: features, placeholders, module inputs, host-stage plan, outputs.

Plain JSON, written next to an exported library and read back by the runtime without the compiler.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

SPEC_VERSION = 1


@dataclasses.dataclass
class InputSpec:
    features: list[dict]  # {"name", "kind": dense|sparse, "tensors": {part: tensor}}
    placeholders: dict[str, dict]  # tensor -> {"dtype", "shape": [int, -1 unknown]}
    module_inputs: list[dict]  # {"name", "source": feed|host|param, "ref", "kind": tensor|shape, "dtype", "shape"}
    host_plan: list[dict]
    outputs: list[dict]  # {"name", "tensor", "dtype", "shape"}
    symbols: dict[str, str]  # symbol -> origin
    # Written by the passes (see recom_tvm.passes); the runtime applies them before launch:
    sort_rows: list[str] = dataclasses.field(default_factory=list)  # sparse features to stably sort by row
    sort_with: dict = dataclasses.field(default_factory=dict)  # feature -> other tensors permuted with its values
    # TF's out-of-range id error, checked on the host (feeds.check_ids): {"tensor", "limit", "label"
    # [, "negative": True: ids < 0 are errors too][, "where_positive": weights: only ids with weight > 0 count]}
    id_checks: list[dict] = dataclasses.field(default_factory=list)
    assertions: list[dict] = dataclasses.field(default_factory=list)  # symbolic preconditions (see assertions.py)
    fused: dict = dataclasses.field(default_factory=dict)  # the fused kernel's packing plan (see packer.py)
    param_recipes: dict = dataclasses.field(default_factory=dict)  # params built from others (flat tables)
    # nodes without a converter run on the host by TensorFlow (config.host_fallback): {"op", "node", "column"}
    corun: list[dict] = dataclasses.field(default_factory=list)
    # where each feed's size symbols are read: {symbol: [feed tensor, axis, "shape" (of the array) | "value"]}
    feed_symbols: dict = dataclasses.field(default_factory=dict)
    # dense features whose one row TF broadcasts against the batch: [{"features": [repeated together], "anchors":
    # [[feature, part, axis, "shape" | "value"]: where the size they meet is read]}] (frontend/row_broadcast.py);
    # the runtime repeats such one-row feeds to that size (runtime/row_broadcast.py)
    row_broadcast: list = dataclasses.field(default_factory=list)
    # the module's tensors per request, for the memory report: {"shape": [size AST (assertions.py)], "dtype"}
    workspace: list[dict] = dataclasses.field(default_factory=list)
    # the symbols the built module's device allocations are sized by (None: unknown; backend/allocation_symbols.py)
    pool_symbols: list | None = None

    # ---------------------------------------------------------------------------------------- construction
    @classmethod
    def build(cls, loaded, graph, inputs, host_plan, outs, symbols) -> InputSpec:
        """outs: (dtype, [dim text]) per output."""
        placeholders = {}
        for f in loaded.features:
            for t in f.tensors.values():
                node = graph.nodes[t.rsplit(":", 1)[0]]
                placeholders[t] = {"dtype": node.attr("dtype"), "shape": node.attr("shape")}
        outputs = [{"name": name, "tensor": t, "dtype": dtype, "shape": shape}
                   for (name, t), (dtype, shape) in zip(loaded.outputs, outs)]
        features = []
        for f in loaded.features:
            feat = f.to_json()
            default = _placeholder_default(graph, f) if f.kind == "dense" else None
            if default is not None:
                feat["default"] = default
            features.append(feat)
        return cls(features, placeholders, [i.to_json() for i in inputs], list(host_plan), outputs, dict(symbols))

    def default_feed(self, name: str):
        """The value a dense feature takes when the request leaves it out (its placeholder_with_default's
        constant, as TF's Session.run does), or None: the feed is required."""
        f = self.feature(name)
        if f is None or "default" not in f:
            return None
        cache = self.__dict__.setdefault("_defaults", {})
        if name not in cache:
            cache[name] = self._default_array(f["default"])
        return cache[name]

    def defaults(self) -> dict:
        """{feature name: default value} of every feature a request may leave out."""
        out = self.__dict__.get("_all_defaults")
        if out is None:
            out = self.__dict__["_all_defaults"] = {f["name"]: self.default_feed(f["name"]) for f in self.features
                                                    if "default" in f}
        return out

    @staticmethod
    def _default_array(d: dict):
        import numpy as np

        value = np.array(d["value"], dtype=object if d["dtype"] == "string" else d["dtype"]).reshape(d["shape"])
        if d["dtype"] == "string":
            value = np.array([v.encode("utf-8") if isinstance(v, str) else v for v in value.reshape(-1)],
                             dtype=object).reshape(d["shape"])
        return value

    def to_json(self) -> str:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # shallow: no deep copy
        return json.dumps({"version": SPEC_VERSION, **fields}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> InputSpec:
        data = json.loads(text)
        if data.pop("version", None) != SPEC_VERSION:
            raise ValueError("unsupported spec version")
        return cls(**data)

    # ----------------------------------------------------------------------------------------------- views
    @property
    def num_inputs(self) -> int:
        return sum(1 for i in self.module_inputs if i["source"] != "param")

    def feature(self, name: str) -> dict | None:
        index = self.__dict__.get("_feature_index")
        if index is None or len(index) != len(self.features):
            index = self.__dict__["_feature_index"] = {f["name"]: f for f in self.features}
        return index.get(name)

    def feed_of(self, tensor: str) -> str:
        """The feed a host tensor belongs to (for error messages): 'name' or 'name.values' etc."""
        for f in self.features:
            for part, t in f.get("tensors", {}).items():
                if t == tensor:
                    return f["name"] if len(f["tensors"]) == 1 else f"{f['name']}.{part}"
        return tensor

    def summary(self) -> str:
        lines = [f"{len(self.features)} features, {self.num_inputs} module inputs, "
                 f"{len(self.module_inputs) - self.num_inputs} params, {len(self.host_plan)} host-stage ops"]
        for f in self.features:
            parts = ", ".join(f"{k}={v}" for k, v in f["tensors"].items())
            lines.append(f"  {f['kind']:6s} {f['name']}: {parts}")
        for o in self.outputs:
            lines.append(f"  output {o['name']}: {o['dtype']}[{', '.join(o['shape'])}]")
        for c in self.corun:
            lines.append(f"  host co-run (TensorFlow): {c['op']} node {c['node']!r}"
                         + (f" (column {c['column']!r})" if c.get("column") else ""))
        return "\n".join(lines)

    def __repr__(self) -> str:  # the summary is more useful than the raw lists
        return f"InputSpec({self.summary()})"


# a default of more elements stays required (the spec is JSON: no large arrays in it)
MAX_DEFAULT_ELEMENTS = 4096


def _placeholder_default(graph, feature) -> dict | None:
    """{"dtype", "shape", "value"} of a dense feature fed through a PlaceholderWithDefault whose default is a
    constant (through Identity nodes), or None."""
    import numpy as np

    node = graph.nodes[feature.tensors["value"].rsplit(":", 1)[0]]
    if node.op != "PlaceholderWithDefault" or not node.inputs:
        return None
    src = node.inputs[0][0]
    for _ in range(32):
        cur = graph.nodes.get(src)
        if cur is None or cur.op != "Identity" or not cur.inputs:
            break
        src = cur.inputs[0][0]
    cur = graph.nodes.get(src)
    if cur is None or cur.op != "Const":
        return None
    value = np.asarray(cur.attr("value"))
    dtype = cur.attr("dtype")
    if value.size > MAX_DEFAULT_ELEMENTS or dtype not in ("bool", "int8", "int16", "int32", "int64", "uint8",
                                                         "float16", "float32", "float64", "string"):
        return None
    flat = value.reshape(-1).tolist()
    if dtype == "string":
        try:
            flat = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in flat]
        except UnicodeDecodeError:  # (JSON holds text: a default of other bytes stays required)
            return None
    return {"dtype": dtype, "shape": list(value.shape), "value": flat}
