"""Names a compiled module and the runtime agree on (the runtime must not import TVM's compiler to learn them)."""

# A Relax function of this name in the module: its `main` returns (outputs, storages), the storages to be dropped
# once the request's stream is synchronised (backend/keep_storage.py, runtime/request_slots.py).
KEEP_STORAGE_ABI = "recom_tvm_keeps_storage"
