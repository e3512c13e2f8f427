"""Runs the requests of one Triton batch on a CompiledModel: merged where batching.py allows, each request's own
answer or error otherwise. Numpy and the recom_tvm runtime only (it runs inside Triton's Python backend)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from ..errors import RecomError
from ..runtime.row_broadcast import repeat_one_row_feeds
from .batching import Merger, plan


@dataclasses.dataclass
class Counters:
    """What the executor did (exported as Triton metrics by the Python backend)."""

    requests: int = 0
    merged_requests: int = 0  # requests answered from a merged run
    merged_runs: int = 0
    fallbacks: int = 0  # merged runs that failed and were re-run request by request
    errors: int = 0  # requests answered with an error


class Executor:
    """`run(list of feeds) -> list of ({output: array} | Exception)`, one entry per request, in order."""

    def __init__(self, model, merge: bool = True, max_merged_rows: int = 16384) -> None:
        self.model = model
        self.merger = Merger(model.spec)
        self.merge = merge and self.merger.reason is None
        self.max_merged_rows = max_merged_rows
        self.counters = Counters()

    def run(self, feeds_list: list[Mapping]) -> list:
        results: list = [None] * len(feeds_list)
        self.counters.requests += len(feeds_list)
        if getattr(self.model.spec, "row_broadcast", None):
            # a one-row context feature (the user of a two-tower score) repeated to the request's rows first:
            # its rows then agree with the others', and requests of different users merge
            feeds_list = [repeat_one_row_feeds(self.model.spec, f) for f in feeds_list]
        if self.merge and len(feeds_list) > 1:
            seen = [self.merger.inspect(f) for f in feeds_list]
            groups = plan([s[1] if s else None for s in seen], [s[0] if s else 0 for s in seen],
                          self.max_merged_rows)
        else:
            seen, groups = [], [[i] for i in range(len(feeds_list))]
        for group in groups:
            if len(group) > 1 and self._run_merged(group, feeds_list, [seen[i][0] for i in group], results):
                continue
            for i in group:
                results[i] = self._run_one(feeds_list[i])
        return results

    def _run_merged(self, group: list[int], feeds_list: list, rows: list[int], results: list) -> bool:
        try:
            merged = self.merger.merge([feeds_list[i] for i in group], rows)
            parts = self.merger.split(self.model.run(merged), rows)
        except Exception:  # noqa: BLE001 - a bad request in the group: each runs alone and gets its own error
            self.counters.fallbacks += 1
            return False
        for i, out in zip(group, parts):
            results[i] = out
        self.counters.merged_runs += 1
        self.counters.merged_requests += len(group)
        return True

    def _run_one(self, feeds: Mapping):
        try:
            return self.model.run(feeds)
        except Exception as err:  # noqa: BLE001 - the request's error goes back to its client; we keep serving
            self.counters.errors += 1
            return err


def error_message(err: BaseException) -> str:
    """The text a client sees: our errors as they are (they name the feed / column), others with their type."""
    if isinstance(err, RecomError):
        return f"{type(err).__name__}: {err}"
    return f"recom_tvm could not run the request: {type(err).__name__}: {err}"
