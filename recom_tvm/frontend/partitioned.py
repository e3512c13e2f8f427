"""Partitioned embedding lookups in a GraphDef, rewritten into one node before import.

TF1 models shard large tables (`tf.compat.v1.fixed_size_partitioner`, `min_max_variable_partitioner`) and TF's
`embedding_lookup` over a list of shards then writes, for either partition strategy ("div" or "mod"):

    p    = <the shard of each id>              new = <its row inside that shard>
    ids_k = DynamicPartition(new, p, N)[k]     pos_k = DynamicPartition(Range(0, Size(..), 1), p, N)[k]
    out  = ParallelDynamicStitch([pos_0 .. pos_N-1], [Gather(shard_k, ids_k) for k])

i.e. out[m] = shard_{p[m]}[new[m]]. Partition and stitch have data-dependent shapes and no place in a fused kernel;
the whole pattern is one gather from the shards stacked in order: out[m] = table[offset[p[m]] + new[m]]. Here the
stitch node becomes `RecomPartitionedGather(new, p, Size(ids), ids, shard_0 .. shard_N-1)` under its own name (its
readers are unchanged; the partitions and per-shard gathers are left unread). Where the graph's own shard / row
arithmetic, evaluated for every id of the table, puts each id x at row x of the stacked shards (the "div"
strategy: `ids_are_rows`), the lookup is a gather by the ids themselves, which the fused kernel takes like any
embedding column's. Anything not exactly this shape is left alone (and then fails as an unsupported op, naming it).
"""

from __future__ import annotations

import numpy as np

from .graph import decode_tensor, parse_tensor_name

OP = "RecomPartitionedGather"
_STITCH = ("ParallelDynamicStitch", "DynamicStitch")
_GATHER = ("Gather", "GatherV2", "ResourceGather")


def _node(by_name: dict, tensor: str):
    name, _ = parse_tensor_name(tensor)
    return by_name.get(name)


def _data_inputs(node) -> list[str]:
    return [i for i in node.input if not i.startswith("^")]


def _const_node(by_name: dict, tensor: str):
    """The Const node `tensor` reads, through Identity nodes (a frozen variable's `read`), or None."""
    node = _node(by_name, tensor)
    while node is not None and node.op == "Identity":
        node = _node(by_name, node.input[0])
    return node if node is not None and node.op == "Const" else None


def _const_int(by_name: dict, tensor: str) -> int | None:
    node = _const_node(by_name, tensor)
    if node is None:
        return None
    value = decode_tensor(node.attr["value"].tensor)
    return int(value.reshape(-1)[0]) if value.size == 1 else None


def _rows(by_name: dict, shard: str) -> int | None:
    node = _const_node(by_name, shard)
    dims = node.attr["value"].tensor.tensor_shape.dim if node is not None else None
    return int(dims[0].size) if dims else None


def shard_offsets(rows) -> np.ndarray:
    """Each shard's first row in the shards stacked in order."""
    return np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(np.int64)


def _match(stitch, by_name: dict) -> list[str] | None:
    """The new node's inputs [new, p, Size(ids), ids, shard_0, ...] if `stitch` closes a partitioned lookup, else
    None."""
    n = stitch.attr["N"].i
    data = _data_inputs(stitch)
    if n < 1 or len(data) != 2 * n:
        return None
    positions, parts = data[:n], data[n:]
    part_of_pos = None
    new = p = None
    shards = []
    for k in range(n):
        pos_name, pos_idx = parse_tensor_name(positions[k])
        dp_pos = by_name.get(pos_name)
        if dp_pos is None or dp_pos.op != "DynamicPartition" or pos_idx != k or \
                dp_pos.attr["num_partitions"].i != n:
            return None
        if part_of_pos is None:
            part_of_pos = dp_pos
        elif dp_pos.name != part_of_pos.name:
            return None
        gather = by_name.get(parse_tensor_name(parts[k])[0])
        if gather is None or gather.op not in _GATHER or parse_tensor_name(parts[k])[1] != 0:
            return None
        g_in = _data_inputs(gather)
        if gather.op == "GatherV2" and (_const_int(by_name, g_in[2]) != 0 or gather.attr["batch_dims"].i != 0):
            return None
        ids_name, ids_idx = parse_tensor_name(g_in[1])
        dp_ids = by_name.get(ids_name)
        if dp_ids is None or dp_ids.op != "DynamicPartition" or ids_idx != k or \
                dp_ids.attr["num_partitions"].i != n:
            return None
        ids_in = _data_inputs(dp_ids)
        if new is None:
            new, p = ids_in
        elif ids_in != [new, p]:
            return None
        shards.append(g_in[0])
    pos_in = _data_inputs(part_of_pos)
    if pos_in[1] != p:
        return None
    rng = _node(by_name, pos_in[0])  # the positions partitioned must be 0 .. len - 1
    if rng is None or rng.op != "Range":
        return None
    r_in = _data_inputs(rng)
    if _const_int(by_name, r_in[0]) != 0 or _const_int(by_name, r_in[2]) != 1:
        return None
    size = _node(by_name, r_in[1])
    if size is None or size.op != "Size":
        return None
    return [new, p, r_in[1], _data_inputs(size)[0]] + shards


# ops the shard / row computation of TF's embedding_lookup uses (both strategies), evaluated elementwise in numpy
_EVAL = {
    "FloorDiv": lambda a, b: a // b, "FloorMod": lambda a, b: a % b, "AddV2": np.add, "Add": np.add,
    "Sub": np.subtract, "Mul": np.multiply, "Maximum": np.maximum, "Minimum": np.minimum, "Less": np.less,
    "LessEqual": np.less_equal, "Greater": np.greater, "GreaterEqual": np.greater_equal,
}
_INT_TYPES = {3: np.int32, 9: np.int64}  # TF DataType enum: DT_INT32, DT_INT64
_ROWS_CHECKED = 1 << 27  # tables up to this many rows have their layout checked id by id (in chunks)
_CHUNK = 1 << 20


def _evaluate(by_name: dict, tensors: list[str], ids: str, x: np.ndarray) -> list[np.ndarray] | None:
    """`tensors` computed from `ids` = x by the graph's own nodes, or None where they use anything but constants,
    `ids` and the elementwise integer ops of _EVAL (and Select / Cast / Identity)."""
    memo: dict[str, np.ndarray] = {"%s:%d" % parse_tensor_name(ids): x}

    def value(t: str):
        name, idx = parse_tensor_name(t)
        key = f"{name}:{idx}"
        if key in memo:
            return memo[key]
        node = by_name.get(name)
        if node is None or idx != 0:
            return None
        ins = _data_inputs(node)
        if node.op == "Const":
            out = decode_tensor(node.attr["value"].tensor)
        elif node.op == "Identity":
            out = value(ins[0])
        elif node.op == "Cast":
            a, to = value(ins[0]), _INT_TYPES.get(node.attr["DstT"].type)
            if a is None or to is None:
                return None
            out = a.astype(to)
        elif node.op in ("Select", "SelectV2"):
            c, a, b = (value(i) for i in ins)
            out = None if c is None or a is None or b is None else np.where(c, a, b)
        elif node.op in _EVAL:
            a, b = value(ins[0]), value(ins[1])
            if a is None or b is None or (np.asarray(b) == 0).any() and node.op in ("FloorDiv", "FloorMod"):
                return None
            out = _EVAL[node.op](a, b)
        else:
            return None
        memo[key] = out
        return out

    outs = [value(t) for t in tensors]
    return None if any(o is None for o in outs) else outs


def _ids_are_rows(by_name: dict, new: str, p: str, ids: str, rows: list[int]) -> bool:
    """Whether, for every id x in [0, sum(rows)), the graph puts x in shard p(x) at row new(x) with
    offset[p(x)] + new(x) == x (TF's "div" strategy: the shards are the table's rows in order). Checked id by id,
    so the lookup can be one gather from the stacked shards by the ids themselves (ids outside the table are an
    error there, as they are in TF's div layout)."""
    total = sum(rows)
    if total == 0 or total > _ROWS_CHECKED:
        return False
    offsets = shard_offsets(rows)
    sizes = np.asarray(rows, np.int64)
    for start in range(0, total, _CHUNK):
        x = np.arange(start, min(total, start + _CHUNK), dtype=np.int64)
        got = _evaluate(by_name, [new, p], ids, x)
        if got is None:
            return False
        new_x, p_x = (np.broadcast_to(np.asarray(g, np.int64), x.shape) for g in got)
        if ((p_x < 0) | (p_x >= len(rows))).any():
            return False
        p_c = np.clip(p_x, 0, len(rows) - 1)
        if ((new_x < 0) | (new_x >= sizes[p_c])).any() or (offsets[p_c] + new_x != x).any():
            return False
    return True


def rewrite_partitioned_lookups(graph_def) -> int:
    """Replace each partitioned lookup's stitch node in place (same name); returns how many were rewritten."""
    by_name = {nd.name: nd for nd in graph_def.node}
    count = 0
    for nd in graph_def.node:
        if nd.op not in _STITCH:
            continue
        inputs = _match(nd, by_name)
        if inputs is None:
            continue
        n = nd.attr["N"].i
        dtype = nd.attr["T"].type
        rows = [_rows(by_name, s) for s in inputs[4:]]
        direct = None not in rows and _ids_are_rows(by_name, inputs[0], inputs[1], inputs[3], rows)
        controls = [i for i in nd.input if i.startswith("^")]
        del nd.input[:]
        nd.input.extend(inputs + controls)
        nd.op = OP
        nd.attr.clear()
        nd.attr["N"].i = n
        nd.attr["T"].type = dtype
        nd.attr["ids_are_rows"].b = direct
        count += 1
    return count
