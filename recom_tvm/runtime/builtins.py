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
