"""A device failure inside run() is reported as the device's fault (DeviceError), never as TF's "the inputs are
invalid" (InvalidArgumentError): on the H200 a CUDA-graph capture error read "the compiled model rejected the
inputs", which sent users looking at their feeds."""

import pytest
import tvm

import recom_tvm
from recom_tvm.runtime.compiled_model import _translate

CUDA_FAILURES = [
    "Traceback (most recent call last):\n  File \"vm.cc\"\nRuntimeError: CUDA Runtime Error: "
    "cudaErrorStreamCaptureImplicit (906): operation not permitted when stream is capturing",
    "InternalError: Check failed: e == cudaSuccess || e == cudaErrorCudartUnloading is false: CUDA: "
    "an illegal memory access was encountered",
    "CUDAError: cuModuleLoadData(&(module_[device_id]), data_.c_str()) failed with error: "
    "CUDA_ERROR_NO_BINARY_FOR_GPU",
]


@pytest.mark.parametrize("message", CUDA_FAILURES)
def test_cuda_failures_are_device_errors(message):
    err = _translate(tvm.error.InternalError(message))
    assert isinstance(err, recom_tvm.DeviceError) and not isinstance(err, recom_tvm.InvalidArgumentError)
    assert str(err).startswith("the device failed running this request: ")
    assert message.splitlines()[-1].split(": ", 1)[-1][:40] in str(err)  # the runtime's own words


def test_a_module_check_stays_an_invalid_argument():
    err = _translate(tvm.error.InternalError("Traceback\nValueError: ErrorContext(fn=main, loc=param[0], "
                                             "param=ids, annotation=R.Tensor((n,), \"int64\")) expect dim 0 = 3"))
    assert isinstance(err, recom_tvm.InvalidArgumentError) and "rejected the inputs" in str(err)
