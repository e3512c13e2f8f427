"""A client for recom_tvm models behind Triton (HTTP or gRPC, through `tritonclient`), and a bounded load / replay
tool for tests and benchmarks.

    client = RecomClient("127.0.0.1:8000", "demo")             # or protocol="grpc", "127.0.0.1:8001"
    scores = client.run({"age": ages, "tags": (indices, values, dense_shape)})["score"]

`run` takes what CompiledModel.run takes; a request the model rejects raises tritonclient's
InferenceServerException carrying recom_tvm's message. Command line (what the tests and the benchmark run in the
server's environment):

    python -m recom_tvm.serving.client replay --url 127.0.0.1:8000 --model demo --requests r.npz --out o.npz
    python -m recom_tvm.serving.client bench --url ... --model demo --requests r.npz --concurrency 8 --seconds 10
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Mapping

import numpy as np

from . import wire

_WIRE_TYPE = {np.dtype(k): v[1] for k, v in wire.DTYPES.items() if k != "string"}


def _tc(protocol: str):
    if protocol == "http":
        import tritonclient.http as tc
    elif protocol == "grpc":
        import tritonclient.grpc as tc
    else:
        raise ValueError(f"protocol must be 'http' or 'grpc', got {protocol!r}")
    return tc


class RecomClient:
    """One connection to one model (not thread-safe: one client per thread)."""

    def __init__(self, url: str, model: str, protocol: str = "http", timeout: float = 60.0) -> None:
        self.tc = _tc(protocol)
        self.protocol, self.model = protocol, model
        if protocol == "http":
            self.client = self.tc.InferenceServerClient(url, connection_timeout=timeout, network_timeout=timeout)
            config = self.client.get_model_config(model)
        else:
            self.client = self.tc.InferenceServerClient(url)
            config = self.client.get_model_config(model, as_json=True)["config"]
        params = {k: v.get("string_value", v.get("stringValue")) for k, v in config.get("parameters", {}).items()}
        self.features = (json.loads(params["recom_tvm_features"]) if "recom_tvm_features" in params
                         else wire.features_from_names([i["name"] for i in config["input"]]))
        self.types = {i["name"]: i.get("data_type", i.get("dataType")).replace("TYPE_", "") for i in config["input"]}
        self.types = {k: "BYTES" if v == "STRING" else v for k, v in self.types.items()}
        self.outputs = [o["name"] for o in config["output"]]

    def run(self, feeds: Mapping) -> dict[str, np.ndarray]:
        """Feeds keyed by feature -> {output: array}, numeric feeds cast to the model's types where exact."""
        arrays = wire.to_wire(self.features, feeds)
        for name, arr in arrays.items():
            want = self.types.get(name)
            if want and want != "BYTES" and arr.dtype != object:
                dtype = np.dtype({v: k for k, v in _WIRE_TYPE.items()}[want])
                if arr.dtype != dtype and arr.dtype.kind in "iub" and dtype.kind in "iu" and np.can_cast(
                        arr.dtype, dtype, "same_kind") and np.array_equal(arr.astype(dtype), arr):
                    arrays[name] = arr.astype(dtype)
        return {k: v[0] for k, v in self.infer_wire(arrays).items()}

    def infer_wire(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Send tensors as they are (with the request dim; the datatype from the array) -> outputs as sent back."""
        inputs = []
        for name, arr in arrays.items():
            arr = np.asarray(arr)
            datatype = "BYTES" if arr.dtype == object or arr.dtype.kind in "SU" else _WIRE_TYPE[arr.dtype]
            inp = self.tc.InferInput(name, list(arr.shape), datatype)
            inp.set_data_from_numpy(arr.astype(object) if arr.dtype.kind in "SU" else arr)
            inputs.append(inp)
        result = self.client.infer(self.model, inputs,
                                   outputs=[self.tc.InferRequestedOutput(o) for o in self.outputs])
        return {o: result.as_numpy(o) for o in self.outputs}

    def close(self) -> None:
        self.client.close()


# ---------------------------------------------------------------------------------- request files (npz, no pickle)
def save_requests(path: str, requests: list[Mapping[str, np.ndarray]], compress: bool = False) -> None:
    """Wire requests ({tensor: array with request dim}) -> one .npz; BYTES as bytes + offsets (exact, no pickle)."""
    data = {}
    for i, arrays in enumerate(requests):
        for name, arr in arrays.items():
            arr = np.asarray(arr)
            if arr.dtype == object:
                flat = [x if isinstance(x, bytes) else str(x).encode() for x in arr.reshape(-1).tolist()]
                data[f"{i}|{name}|bytes"] = np.frombuffer(b"".join(flat), np.uint8)
                data[f"{i}|{name}|ends"] = np.cumsum([len(x) for x in flat], dtype=np.int64)
                data[f"{i}|{name}|shape"] = np.array(arr.shape, np.int64)
            else:
                data[f"{i}|{name}"] = arr
    data["count"] = np.array(len(requests))
    (np.savez_compressed if compress else np.savez)(path, **data)


def load_requests(path: str) -> list[dict[str, np.ndarray]]:
    with np.load(path, allow_pickle=False) as data:
        requests: list[dict] = [{} for _ in range(int(data["count"]))]
        for key in data.files:
            if key == "count":
                continue
            i, name, *kind = key.split("|")
            if not kind:
                requests[int(i)][name] = data[key]
            elif kind[0] == "bytes":
                raw, ends = data[key].tobytes(), data[f"{i}|{name}|ends"].tolist()
                items = [raw[a:b] for a, b in zip([0] + ends[:-1], ends)]
                arr = np.array(items + [None], dtype=object)[:-1]
                requests[int(i)][name] = arr.reshape(data[f"{i}|{name}|shape"].tolist())
    return requests


# ------------------------------------------------------------------------------------------------ load drivers
def replay(url: str, model: str, protocol: str, requests: list, concurrency: int = 1) -> list:
    """Send every request once (by `concurrency` threads, each with its own client) -> per request
    ({output: array} | error message, latency seconds)."""
    results: list = [None] * len(requests)

    def handle(client: RecomClient, i: int) -> None:
        t0 = time.perf_counter()
        try:
            out = client.infer_wire(requests[i])
        except Exception as err:  # noqa: BLE001 - InferenceServerException: the server's message
            out = err.message() if hasattr(err, "message") and callable(err.message) else str(err)
        results[i] = (out, time.perf_counter() - t0)

    each_request(len(requests), concurrency, lambda: RecomClient(url, model, protocol), handle)
    return results


def each_request(n: int, concurrency: int, open_client, handle) -> None:
    """handle(client, i) once for every i in range(n), by `concurrency` threads, each with its own
    open_client() (closed at the end)."""
    todo, lock = iter(range(n)), threading.Lock()

    def worker() -> None:
        client = open_client()
        try:
            while True:
                with lock:
                    i = next(todo, None)
                if i is None:
                    return
                handle(client, i)
        finally:
            client.close()

    run_threads(worker, concurrency)


def bench(url: str, model: str, protocol: str, requests: list, concurrency: int, seconds: float,
          max_requests: int) -> dict:
    """Closed-loop load: `concurrency` clients each send the next request as soon as the last is answered, for
    `seconds` or `max_requests` in all -> {requests, errors, rps, p50_ms, p99_ms}."""
    load = ClosedLoop(seconds, max_requests)

    def worker() -> None:
        client = RecomClient(url, model, protocol)
        try:
            client.infer_wire(requests[0])  # warm the connection
            load.drive(lambda i: client.infer_wire(requests[i % len(requests)]), errors=Exception)
        finally:
            client.close()

    t0 = time.perf_counter()
    run_threads(worker, concurrency)
    return summarize(load.latencies, time.perf_counter() - t0, load.errors)


class ClosedLoop:
    """The shared state of a closed-loop load: each thread calling `drive` sends request 0, 1, 2, ... (numbered
    across threads) one after the other until `stop_at` (perf_counter seconds) passes or `max_requests` were sent,
    and records every request's latency; exceptions of the types `errors` are counted, others propagate."""

    def __init__(self, seconds: float, max_requests: int | None = None) -> None:
        self.latencies: list[float] = []
        self.errors = 0
        self.sent = 0
        self.max_requests = max_requests
        self.lock = threading.Lock()
        self.stop_at = time.perf_counter() + seconds

    def drive(self, send, errors: type[BaseException] | tuple = ()) -> None:
        """Call `send(i)` with the next request number until the load is over (one thread's loop)."""
        while time.perf_counter() < self.stop_at:
            with self.lock:
                if self.max_requests is not None and self.sent >= self.max_requests:
                    return
                i = self.sent
                self.sent += 1
            t0 = time.perf_counter()
            try:
                send(i)
            except errors:
                with self.lock:
                    self.errors += 1
            dt = time.perf_counter() - t0
            with self.lock:
                self.latencies.append(dt)


def summarize(latencies: list[float], wall: float, errors: int = 0) -> dict:
    lat = np.array(latencies) * 1e3
    return {"requests": len(latencies), "errors": errors, "seconds": round(wall, 3),
            "rps": round(len(latencies) / wall, 2) if wall > 0 else 0.0,
            "p50_ms": round(float(np.percentile(lat, 50)), 3) if lat.size else None,
            "p99_ms": round(float(np.percentile(lat, 99)), 3) if lat.size else None}


def run_threads(worker, n: int) -> None:
    """Run `worker` on `max(1, n)` threads, wait for all, re-raise the first exception one of them raised."""
    failures: list = []

    def guarded() -> None:
        try:
            worker()
        except BaseException as err:  # noqa: BLE001 - reported after join
            failures.append(err)

    threads = [threading.Thread(target=guarded) for _ in range(max(1, n))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m recom_tvm.serving.client", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["replay", "bench"])
    p.add_argument("--url", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--protocol", default="http", choices=["http", "grpc"])
    p.add_argument("--requests", required=True, help=".npz written by save_requests")
    p.add_argument("--out", help="replay: .npz of outputs ('I|output'), errors ('I|!error') and latencies")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--max-requests", type=int, default=100_000)
    args = p.parse_args(argv)
    requests = load_requests(args.requests)
    if args.command == "bench":
        print(json.dumps(bench(args.url, args.model, args.protocol, requests, args.concurrency, args.seconds,
                               args.max_requests)))
        return 0
    results = replay(args.url, args.model, args.protocol, requests, args.concurrency)
    data = {"latency_s": np.array([r[1] for r in results])}
    for i, (out, _) in enumerate(results):
        if isinstance(out, str):
            data[f"{i}|!error"] = np.frombuffer(out.encode(), np.uint8)
        else:
            data.update({f"{i}|{k}": v for k, v in out.items()})
    np.savez(args.out, **data)
    print(json.dumps({"requests": len(results), "errors": sum(isinstance(r[0], str) for r in results)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
