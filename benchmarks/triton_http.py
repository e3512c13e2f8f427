"""A small Triton HTTP client on the standard library, numpy and recom_tvm.serving.client's load loop (for machines
without tritonclient and its dependency tree, e.g. the GPU machine): KServe v2 `POST /v2/models/NAME/infer` with Triton's binary tensor data
extension, one keep-alive connection per client, threads for concurrency.

Request body: a JSON header (inputs with `binary_data_size`, outputs asking for `binary_data`), then each input's
raw bytes in the header's order; `Inference-Header-Content-Length` says where the JSON ends. BYTES tensors are
elements of a 4-byte little-endian length then the bytes. The answer is laid out the same way (or JSON only, with
`data`, when nothing is binary); an error is a JSON {"error": message} with a 4xx / 5xx status.

    client = TritonHTTP("127.0.0.1:8000", "demo")
    outputs = client.infer({"age": array_with_request_dim, ...})        # {output: array}
    bench("127.0.0.1:8000", "demo", requests, concurrency=8, seconds=5, max_requests=20000)
"""

from __future__ import annotations

import http.client
import json
import struct
import threading
import time

import numpy as np

from recom_tvm.serving.client import ClosedLoop, each_request

DATATYPES = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16, "INT64": np.int64, "INT32": np.int32,
             "INT16": np.int16, "INT8": np.int8, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
             "UINT64": np.uint64, "BOOL": np.bool_}
_WIRE = {np.dtype(v): k for k, v in DATATYPES.items()}


class TritonError(RuntimeError):
    """The server's answer to a request it rejected: `status` (HTTP) and the server's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def encode(arr: np.ndarray) -> tuple[str, bytes]:
    """A tensor -> (datatype, raw bytes) in the binary data extension's layout."""
    arr = np.asarray(arr)
    if arr.dtype == object or arr.dtype.kind in "SU":
        parts = []
        for x in arr.reshape(-1).tolist():
            b = x.encode() if isinstance(x, str) else bytes(x)
            parts += [struct.pack("<I", len(b)), b]
        return "BYTES", b"".join(parts)
    if arr.dtype not in _WIRE:
        raise TypeError(f"dtype {arr.dtype} has no Triton datatype")
    return _WIRE[arr.dtype], np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()


def decode(datatype: str, shape: list[int], raw: bytes) -> np.ndarray:
    if datatype == "BYTES":
        items, pos = [], 0
        while pos < len(raw):
            (n,) = struct.unpack_from("<I", raw, pos)
            items.append(raw[pos + 4:pos + 4 + n])
            pos += 4 + n
        out = np.empty(len(items), dtype=object)
        out[:] = items
        return out.reshape(shape)
    return np.frombuffer(raw, dtype=np.dtype(DATATYPES[datatype]).newbyteorder("<")).reshape(shape)


class TritonHTTP:
    """One keep-alive HTTP connection to one model (not thread-safe: one per thread)."""

    def __init__(self, url: str, model: str, outputs: list[str] | None = None, timeout: float = 60.0) -> None:
        self.url, self.model, self.timeout = url, model, timeout
        self.conn = http.client.HTTPConnection(url, timeout=timeout)
        self.outputs = outputs or [o["name"] for o in self.get(f"/v2/models/{model}/config")["output"]]

    def get(self, path: str) -> dict:
        self.conn.request("GET", path)
        resp = self.conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise TritonError(resp.status, _error_text(body))
        return json.loads(body)

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """{input name: array (with the request dim)} -> {output name: array}; raises TritonError."""
        header, blobs = {"inputs": [], "outputs": [{"name": o, "parameters": {"binary_data": True}}
                                                   for o in self.outputs]}, []
        for name, arr in inputs.items():
            datatype, raw = encode(arr)
            header["inputs"].append({"name": name, "shape": list(np.shape(arr)), "datatype": datatype,
                                     "parameters": {"binary_data_size": len(raw)}})
            blobs.append(raw)
        head = json.dumps(header, separators=(",", ":")).encode()
        body = b"".join([head, *blobs])
        try:
            self.conn.request("POST", f"/v2/models/{self.model}/infer", body=body, headers={
                "Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(head))})
            resp = self.conn.getresponse()
            data = resp.read()
        except (ConnectionError, http.client.HTTPException):
            self.conn.close()  # a dropped keep-alive connection: reconnect once
            self.conn = http.client.HTTPConnection(self.url, timeout=self.timeout)
            raise
        if resp.status != 200:
            raise TritonError(resp.status, _error_text(data))
        n = resp.getheader("Inference-Header-Content-Length")
        meta = json.loads(data[:int(n)] if n is not None else data)
        pos, out = int(n) if n is not None else len(data), {}
        for o in meta["outputs"]:
            size = o.get("parameters", {}).get("binary_data_size")
            if size is None:
                out[o["name"]] = np.array(o["data"], dtype=object if o["datatype"] == "BYTES"
                                          else DATATYPES[o["datatype"]]).reshape(o["shape"])
            else:
                out[o["name"]] = decode(o["datatype"], o["shape"], data[pos:pos + size])
                pos += size
        return out

    def close(self) -> None:
        self.conn.close()


def _error_text(body: bytes) -> str:
    try:
        return json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace")


def replay(url: str, model: str, requests: list[dict], concurrency: int = 1) -> list:
    """Every request once -> per request {output: array} or the server's error message (str)."""
    results: list = [None] * len(requests)

    def handle(client: TritonHTTP, i: int) -> None:
        try:
            results[i] = client.infer(requests[i])
        except TritonError as err:
            results[i] = str(err)

    each_request(len(requests), concurrency, lambda: TritonHTTP(url, model), handle)
    return results


def bench(url: str, model: str, requests: list[dict], concurrency: int, seconds: float,
          max_requests: int) -> tuple[list[float], int, float]:
    """Closed loop: `concurrency` clients each send their next request when the last is answered, until `seconds`
    pass or `max_requests` were sent -> (latencies in s, errors, wall seconds)."""
    load = ClosedLoop(seconds, max_requests)
    ready, go, failures = threading.Barrier(concurrency + 1), threading.Event(), []

    def worker() -> None:
        client = TritonHTTP(url, model)
        try:
            try:
                client.infer(requests[0])  # connect and warm up outside the timed loop
            except BaseException as err:  # noqa: BLE001 - reported by the caller
                failures.append(err)
                ready.abort()
                return
            ready.wait()
            go.wait()
            load.drive(lambda i: client.infer(requests[i % len(requests)]),
                       errors=(TritonError, OSError, http.client.HTTPException))
        finally:
            client.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    try:
        ready.wait(timeout=120)
    except threading.BrokenBarrierError:
        for t in threads:
            t.join(5)
        raise RuntimeError(f"a client failed its first request: {failures[:1]}") from None
    t0 = time.perf_counter()
    load.stop_at = t0 + seconds
    go.set()
    for t in threads:
        t.join()
    return load.latencies, load.errors, time.perf_counter() - t0
