"""Running a host co-run subgraph (see recom_tvm.frontend.corun) in TensorFlow, one session per model.

TensorFlow is imported here only when a model has such a part: serving hosts of other models never need it.
"""

from __future__ import annotations

import base64
import threading

import numpy as np

from ..errors import InvalidArgumentError, ModelFormatError
from .strings import from_objects

_SESSIONS: dict[int, tuple] = {}  # id(plan node) -> (node, session): built once per model
_LOCK = threading.Lock()


def require_tensorflow(corun: list[dict]) -> None:
    """A clear error where a model with a co-run part is loaded without TensorFlow."""
    try:
        import tensorflow  # noqa: F401
    except ImportError as err:
        ops = ", ".join(f"{c['op']} ({c['node']})" for c in corun[:5])
        raise ModelFormatError(f"this model runs {len(corun)} op(s) on the host through TensorFlow (host co-run: "
                               f"{ops}); install tensorflow-cpu on this host, or re-import it with converters for "
                               "them") from err


def _session(node: dict):
    hit = _SESSIONS.get(id(node))
    if hit is not None and hit[0] is node:
        return hit[1]
    with _LOCK:
        hit = _SESSIONS.get(id(node))
        if hit is not None and hit[0] is node:
            return hit[1]
        import tensorflow as tf

        gd = tf.compat.v1.GraphDef.FromString(base64.b64decode(node["attrs"]["graph_def"]))
        g = tf.Graph()
        with g.as_default():
            tf.compat.v1.import_graph_def(gd, name="")
        sess = tf.compat.v1.Session(graph=g)
        if node["attrs"]["init"]:
            sess.run([g.get_operation_by_name(n) for n in node["attrs"]["init"]])
        _SESSIONS[id(node)] = (node, sess)
        return sess


def run_tf_subgraph(node: dict, *inputs) -> tuple:
    """The subgraph's handed-over tensors for this request's feeds (strings back as bytes arrays)."""
    import tensorflow as tf

    sess = _session(node)
    feed = {t: (np.asarray(v, dtype=object) if isinstance(v, np.ndarray) and v.dtype.kind == "S" and
                v.dtype.itemsize == 0 else v) for t, v in zip(node["attrs"]["feeds"], inputs)}
    try:
        outs = sess.run(node["attrs"]["fetches"], feed_dict=feed)
    except tf.errors.InvalidArgumentError as err:
        raise InvalidArgumentError(f"host co-run (TensorFlow): {err.message.splitlines()[0]}") from None
    return tuple(from_objects(o) if isinstance(o, np.ndarray) and o.dtype == object else np.asarray(o)
                 for o in outs)
