"""Packed functions compiled modules call back into (registered on import; runtime-only safe).

They turn device-side error flags into TF's InvalidArgumentError messages. Only the unoptimized module uses them:
the optimized one checks on the host before launch or proves the checks away.
"""

from __future__ import annotations

import tvm_ffi

ERROR_MARK = "[recom_tvm.InvalidArgument] "


@tvm_ffi.register_global_func("recom_tvm.check_gather", override=True)
def _check_gather(indices, status, label: str, limit: int):
    """Raise TF-CPU's GatherV2 error if the range-check kernel found an index outside [0, limit)."""
    bad, pos, value = (int(v) for v in status.numpy())
    if bad:
        raise ValueError(f"{ERROR_MARK}{label}: indices[{pos}] = {value} is not in [0, {limit})")
    return _fresh(indices)


@tvm_ffi.register_global_func("recom_tvm.check_assert", override=True)
def _check_assert(value, cond, message: str):
    """TF's Assert: raise its InvalidArgumentError if the condition tensor is not all true; else pass `value`."""
    if not bool(cond.numpy().all()):
        raise ValueError(f"{ERROR_MARK}assertion failed: {message}")
    return _fresh(value)


def _fresh(value):
    """A copy on the same device: the result of a packed call must not alias its argument, whose storage the
    VM's static memory plan hands to a later op once the call has read it (the caller would then see that op's
    output)."""
    return value.copyto(value.device)


_SEGMENT_ERRORS = {  # kernels.segment_check's codes -> TF-CPU's messages
    1: "indices[{pos}] == {value} out of range [0, {rows})",
    2: "segment ids are not increasing (segment_ids[{pos}] = {value})",
    3: "segment id {value} (segment_ids[{pos}]) out of range",
    4: "segment ids must be < num_segments ({num}), got segment_ids[{pos}] = {value}",
}


@tvm_ffi.register_global_func("recom_tvm.check_segments", override=True)
def _check_segments(segment_ids, status, label: str, rows: int, num: int):
    """Raise TF's error for a segment reduction's bad indices / segment ids; else pass the segment ids."""
    code, pos, value = (int(v) for v in status.numpy())
    if code:
        raise ValueError(f"{ERROR_MARK}{label}: " + _SEGMENT_ERRORS[code].format(pos=pos, value=value, rows=rows,
                                                                                  num=num))
    return _fresh(segment_ids)


@tvm_ffi.register_global_func("recom_tvm.check_gather_nd", override=True)
def _check_gather_nd(indices, status, flat, label: str, shape):
    """Raise TF-CPU's GatherNd error for a row of indices outside the params' shape; else pass the indices."""
    bad, pos, _ = (int(v) for v in status.numpy())
    if bad:
        row = flat.numpy()[pos].tolist()
        raise ValueError(f"{ERROR_MARK}{label}: indices[{pos}] = {row} does not index into param shape "
                         f"{[int(d) for d in shape]}")
    return _fresh(indices)
