"""The native host stage: feed checks, row sorting, string hashing, host-plan ops, binding and packing in C, with
the GIL released. Design and measurements: docs/NATIVE_HOST.md. The C sources are in `src/`; the library is
compiled on the build host (recom_tvm.native_build) and shipped beside the exported model (`<lib>.host.so`), so a
serving host needs no compiler. The numpy implementation (feeds.py, host_stage.py, packer.py) stays the reference
and the fallback (config.host_stage = "numpy")."""

from .host import NativeHost, load_library

__all__ = ["NativeHost", "load_library"]
