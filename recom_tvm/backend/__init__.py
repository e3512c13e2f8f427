"""How recom_tvm compiles a Relax module: TVM's pipeline with the dense tail's schedules and CUDA graphs."""
