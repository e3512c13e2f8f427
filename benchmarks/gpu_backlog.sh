#!/usr/bin/env bash
# Every GPU run the open issues still need, as one host preparation and one device call each.
#
#   bash benchmarks/gpu_backlog.sh prepare [CALL...]   # build host (TVM compiler + TF): .device/backlog/CALL
#   bash benchmarks/gpu_backlog.sh run CALL            # GPU machine (TVM runtime bundle, numpy, PyTorch only)
#
# A device call carries `.device/activate.sh`, `.device/tvm_runtime_py312.tar.xz` (staged by prepare) and
# `.device/backlog/CALL` (each folder stays under 60 MiB: the carry limit is 64 MiB with the runtime), runs under
# 10 minutes, prints a short table and leaves every log and JSON in $OUT/CALL.tgz. Folders must be prepared from
# the code the run is to check: prepare again after any change to the compiler, the packer or the runtime.
# Dry run of a device call on the build host: a folder prepared with the script's `--target llvm`, then
#   GPU_BACKLOG_DIR=/tmp/dry GPU_BACKLOG_ACTIVATE=/dev/null PATH=<dir with a fake nvidia-smi>:.venv/bin:$PATH \
#     bash benchmarks/gpu_backlog.sh run CALL      (checked for `corpus` on 2026-12-05)
#
# CALL          issue   what it checks
# corpus        13      the 30 user-written graphs, imported + optimized, B = 1 / 7 / 512 ordinary + hostile,
#                       default build (CUDA graphs off): every output incl. the embedding stage vs TF. Since
#                       2026-12-06 its folder (47 MiB) and the working tree (17 MiB) exceed the carry limit: move
#                       half of the models' files (corpus-<model>.*, corpus-<model>__*) into a second folder and
#                       run each half in its own call: python3 benchmarks/gpu_corpus.py run --dir <half> --out $OUT
# graphs        15.5    the corpus built with CUDA graphs, every case twice (the second pass replays the captured
#                       graphs, checks included), and 8 threads serving the demo with graphs (concurrent captures).
#                       43 MiB since 2026-12-06: split the corpus folder by model into two halves (as for corpus)
#                       and run gpu_corpus.py run --passes 2 on each in its own call
# request       15      E and mixed-100 from TF-style feeds step by step (host stage, H2D, kernels, D2H),
#                       1 vs 8 threads, answers vs the build host's, with a stream per VM (the default since
#                       2026-12-06); then threads_scaling.py on the same folder:
#                       each step from 1 / 2 / 4 / 8 threads, a stream per VM vs one shared stream; and run / host
#                       again with feeds dicts read with the GIL (RECOM_TVM_NATIVE_FEEDS_OUTSIDE_GIL=0: the A/B)
# device_e2e    15      the device side of E / mixed-100 vs PyTorch grouped embedding_bag + MLP in a CUDA graph
# graphs_threads 15.6   E and mixed-100 at B = 1 / 32 built without and with CUDA graphs (RECOM_TVM_CUDA_GRAPH=1;
#                       the graph builds run twice: default stream, and a stream per VM, RECOM_TVM_CUDA_GRAPH_STREAMS=1):
#                       run() from 1 / 2 / 4 / 8 threads (one native call; with graphs since 2026-12-06 for the
#                       batches a VM has captured) vs step by step, the GPU's busy share, answers vs the build host's;
#                       then the request path's own checks (every batch, 8 threads) on the graph builds
# compact       16      compact tables (fp16 / bf16 / int8) and int32 packing (huge ids, demo.i64) vs TF on the
#                       GPU, E's kernel per dtype and knob (time vs floor), ncu counters of E at B = 2,048, and
#                       model L (zoo.model_l: E's 40 large columns alone, 2^22-row tables in DRAM) per dtype: E's
#                       tables are 93% cache-resident, so compact tables are measured where their bytes bind; and
#                       L128 (the same with 128-float rows: int8 rows span fewer 64-byte DRAM reads than fp16 rows
#                       there; at 32 floats they cannot, measured 2026-12-08)
# floor         16      E's and F's fp32 kernels against their floors (E 1.47x / 1.26x at B = 512 / 2,048 after
#                       round 9, F 1.59x / 1.26x, 2026-12-07): compact_kernels.py measure of E's float32 candidates
#                       and F's (its best at 512 over FGRID: 1.60x, the grid within 5%, twenty-second session),
#                       ncu --set full of F's FGRID best at 512 and of E's vec8 grid's best
#                       at 512 with the binary and the linear bucketize search, and the tuned kernel with the linear
#                       search at 2,048 (details and SASS pages as CSV, the reports in the
#                       tgz), and gather_floor.py: what TVM's plain gather of random rows reaches (32 / 64 / 128-byte
#                       rows, L1-, L2- and DRAM-sized tables)
# kernels       15      E's request-path kernel time per kernel (CUPTI via torch.profiler) and its answers: E as
#                       built by default, with RECOM_TVM_DENSE_TAIL=off, with RECOM_TVM_DEVICE_HASH=off, and
#                       mixed-100 (request_kernels_gpu.py; B = 32 / 2,048)
# suite         15.7    the benchmark suite (E, mixed 100 / 1,000, the 30 / 300 / 2,000-column sweep; F once its
#                       TF export exists here: add it to SUITE_MODELS) with the current request path; if prepare
#                       reports more than 60 MiB, run it in parts: the run measures every model folder carried, so
#                       carry $B/suite/PREPARED_FROM and some of $B/suite/suite/<model> per call (SUITE_ITERS,
#                       SUITE_TIMEOUT shorten it; SUITE_HOST_ARGS=--no-tf skips prepare's TF-CPU timings; on a
#                       machine kept warm between the calls, the earlier parts' folders are still there and
#                       the later call measures them too: 2026-12-05, H100, all five models in 178 s)
# hash          15.2    string hashing on the device (config.device_hash) vs the host hash: demo, mixed-100,
#                       weighted_mix, example_mix (tf.Examples), 3 corpus graphs at B = 1 / 32 / 2048: same outputs bit for
#                       bit, TF's, the hash kernel's ids bit-exact on the runtime's packed input; prepare()/run() times
# dense_tune    15.5    a tuning round of E's MLP layers alone (tune_models.py export --dense-only: 11 candidates
#                       per layer and batch, B = 32 / 256 / 2,048); after the run, on the build host:
#                       python benchmarks/tune_models.py import --round-dir .device/backlog/dense_tune/round \
#                         --results <the run's dense_tune.tgz, unpacked> --models e   (records in benchmarks/tuning)
# dense_grid    15.5    E's MLP layers over a grid of gemv configs (kvec 1, 2, 4) + dlight's matmul (dense-grid) at
#                       B = 1 / 8 / 32 / 128 / 256 / 512 / 2,048, timed cold (L2 flushed); after the run:
#                       python benchmarks/tune_models.py import --round-dir .device/backlog/dense_grid/round \
#                         --results <dense_grid.tgz, unpacked> --models e --batches 1,8,32,128,256,512,2048
# seeded        16      a tuning round of E's fused kernel on its int32 packed layout, not searched (rounds 7 / 8
#                       ran on 2026-12-07 with seeds_e.json / seeds_e_r8.json at B = 32 / 256 / 2,048; round 9 is
#                       the next): B = 512 as a new tuning batch (every batch's best record as its baseline) and
#                       2,048, with benchmarks/tuning/seeds_e_r9.json (the interleaved vec8 grid's best at 512 and
#                       its neighbours), none this layout has measured; after the run:
#                       python benchmarks/tune_models.py import --round-dir .device/backlog/seeded/round \
#                         --results <seeded.tgz, unpacked> --models e --batches 512,2048
set -euo pipefail
cd "$(dirname "$0")/.."
B=${GPU_BACKLOG_DIR:-.device/backlog}  # (another folder: a dry run of the device side on this host, built with --target llvm)
CALLS="corpus graphs request device_e2e graphs_threads compact floor suite hash kernels dense_tune dense_grid seeded"
SUITE_MODELS=${SUITE_MODELS:-e,mixed100,mixed1000,sweep30,sweep300,sweep2000}

prepare_one() {
  local d=$B/$1
  case " $CALLS " in *" $1 "*) ;; *) echo "unknown call $1 (one of: $CALLS)" >&2; exit 2 ;; esac
  rm -rf "$d" && mkdir -p "$d"
  case $1 in
    corpus) python benchmarks/gpu_corpus.py prepare --dir "$d/corpus" ;;
    graphs) python benchmarks/gpu_corpus.py prepare --cuda-graph --dir "$d/corpus"
            RECOM_TVM_CUDA_GRAPH=1 python benchmarks/serving.py prepare --dir "$d/serving" ;;
    request) python benchmarks/request_path_gpu.py prepare --dir "$d/rp" ;;
    device_e2e) python benchmarks/gpu_request_path.py prepare --dir "$d/rp" --models mixed100,e ;;
    graphs_threads) python benchmarks/request_path_gpu.py prepare --dir "$d/rp" --batches 1,32
                    RECOM_TVM_CUDA_GRAPH=1 python benchmarks/request_path_gpu.py prepare --dir "$d/rpg" --batches 1,32 ;;
    compact) python benchmarks/compact_kernels.py export --dir "$d/kernels" --models e --batches 512,2048
             python benchmarks/compact_kernels.py export --dir "$d/kernels_l" --models l --rows 4194304 \
               --batches 512,2048 --dtypes float32,float16,int8 --variants vec8,best512,stage_meta,group2
             python benchmarks/compact_kernels.py export --dir "$d/kernels_l128" --models l128 --rows 1048576 \
               --batches 2048 --dtypes float32,float16,int8 --variants vec8,best512,stage_meta,group2
             python benchmarks/gpu_correctness.py prepare --dir "$d/check" --only demo mixed24 weighted_mix identity \
               --schedules 2 --compact 1 ;;
    floor) python benchmarks/compact_kernels.py export --dir "$d/kernels" --models e --batches 512,2048 --dtypes float32
           python benchmarks/compact_kernels.py export --dir "$d/kernels" --models f --batches 512,2048 --dtypes float32 \
             --variants fgrid,best512,best512_interleave,best512_light_first,best512_unroll2,best512_once,i_t128_r4_g2
           python benchmarks/gather_floor.py export --dir "$d/gather" ;;
    suite) python benchmarks/suite.py host --dir "$d/suite" --models "$SUITE_MODELS" ${SUITE_HOST_ARGS:-} ;;
    hash) python benchmarks/gpu_device_hash.py prepare --dir "$d/dh" ;;
    dense_tune) python benchmarks/tune_models.py export --round-dir "$d/round" --models e --per-task 10 --dense-only ;;
    dense_grid) python benchmarks/tune_models.py dense-grid --round-dir "$d/round" --models e --per-task 36 \
                  --batches 1,8,32,128,256,512,2048 ;;
    seeded) python benchmarks/tune_models.py seeded --round-dir "$d/round" --models e \
              --configs benchmarks/tuning/seeds_e_r9.json --batches 512,2048 ;;
    kernels) python benchmarks/request_path_gpu.py prepare --dir "$d/e" --models e --batches 32,2048
             RECOM_TVM_DENSE_TAIL=off python benchmarks/request_path_gpu.py prepare --dir "$d/e_dlight" --models e --batches 32
             RECOM_TVM_DEVICE_HASH=off python benchmarks/request_path_gpu.py prepare --dir "$d/e_host_hash" --models e --batches 32
             python benchmarks/request_path_gpu.py prepare --dir "$d/mixed100" --models mixed100 --batches 32,2048 ;;
    *) echo "unknown call $1 (one of: $CALLS)" >&2; exit 2 ;;
  esac
  # the code the folder was built from: a folder without this file is incomplete, one of another commit is stale
  echo "$(git rev-parse HEAD)$(git diff --quiet HEAD -- recom_tvm benchmarks || echo ' (uncommitted changes)')" > "$d/PREPARED_FROM"
  echo "$1: $(du -sm "$d" | cut -f1) MiB in $d (carry it with .device/activate.sh and the runtime tarball)"
}

run_one() {
  local d=$B/$1 o=/tmp/backlog_$1
  rm -rf "$o" && mkdir -p "$o"
  [ -f "$d/PREPARED_FROM" ] || { echo "$d is missing or incomplete: run 'prepare $1' on the build host" >&2; exit 2; }
  echo "prepared from $(cat "$d/PREPARED_FROM")"
  source "${GPU_BACKLOG_ACTIVATE:-.device/activate.sh}"  # (a dry run on the build host: an empty file)
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$o/device.txt"
  set +e
  case $1 in
    corpus) timeout 540 python3 benchmarks/gpu_corpus.py run --dir "$d/corpus" --out "$o" > "$o/corpus.log" 2>&1
            echo "corpus rc=$?"; grep -v '^\s*$' "$o/corpus.log" | tail -30 ;;
    graphs) timeout 420 python3 benchmarks/gpu_corpus.py run --passes 2 --dir "$d/corpus" --out "$o" > "$o/corpus.log" 2>&1
            echo "corpus (graphs) rc=$?"; grep -v '^\s*$' "$o/corpus.log" | tail -25
            timeout 100 python3 benchmarks/serving.py run --dir "$d/serving" --out "$o" --runs 2000 > "$o/serving.log" 2>&1
            echo "serving (graphs, 8 threads) rc=$?"; tail -15 "$o/serving.log" ;;
    request) timeout 280 python3 benchmarks/request_path_gpu.py run --dir "$d/rp" --out "$o" > "$o/request.log" 2>&1
             echo "request path rc=$?"; grep -v '^\s*$' "$o/request.log" | tail -40
             timeout 280 python3 benchmarks/threads_scaling.py --dir "$d/rp" --per-thread 150 --out "$o" > "$o/threads.log" 2>&1
             echo "threads scaling rc=$?"; grep -v '^\s*$' "$o/threads.log" | grep -v Warning | tail -30
             RECOM_TVM_NATIVE_FEEDS_OUTSIDE_GIL=0 timeout 150 python3 benchmarks/threads_scaling.py --dir "$d/rp" \
               --per-thread 150 --steps run,host --tag _feeds_with_gil --out "$o" > "$o/threads_gil.log" 2>&1
             echo "threads scaling, feeds read with the GIL (A/B) rc=$?"; grep -v '^\s*$' "$o/threads_gil.log" \
               | grep -v Warning | tail -14 ;;
    graphs_threads)  # rpg twice: on the default stream, and on a stream per VM (RECOM_TVM_CUDA_GRAPH_STREAMS=1)
      for v in rp rpg rpg_streams; do
        timeout 140 env RECOM_TVM_CUDA_GRAPH_STREAMS=$([ $v = rpg_streams ] && echo 1 || echo 0) \
          python3 benchmarks/threads_scaling.py --dir "$d/${v%_streams}" --steps run,run_py --per-thread 400 --repeat 5 \
          --gpu-busy --tag "_$v" --out "$o" > "$o/threads_$v.log" 2>&1
        echo "threads ($v) rc=$?"; grep -v '^\s*$' "$o/threads_$v.log" | grep -v Warning | tail -22
      done
      timeout 120 env RECOM_TVM_CUDA_GRAPH_STREAMS=1 python3 benchmarks/request_path_gpu.py run --dir "$d/rpg" \
        --out "$o" --iters 30 > "$o/request_rpg.log" 2>&1
      echo "request path (graphs, a stream per VM) rc=$?"; grep -v '^\s*$' "$o/request_rpg.log" | tail -24 ;;
    device_e2e) timeout 540 python3 benchmarks/gpu_request_path.py run --dir "$d/rp" --out "$o" > "$o/e2e.log" 2>&1
                echo "device e2e rc=$?"; grep -v '^\s*$' "$o/e2e.log" | tail -40 ;;
    compact)
      timeout 90 python3 benchmarks/gpu_correctness.py run --dir "$d/check" --out "$o" > "$o/check.log" 2>&1
      echo "gpu_correctness (compact) rc=$?"; tail -n 4 "$o/check.log"
      timeout 240 python3 benchmarks/compact_kernels.py measure --dir "$d/kernels" --out "$o" --number 20 --repeat 5 \
        > "$o/kernels.log" 2>&1
      echo "compact_kernels rc=$?"; tail -n 25 "$o/kernels.log"
      timeout 200 python3 benchmarks/compact_kernels.py measure --dir "$d/kernels_l" --out "$o/l" --number 20 --repeat 5 \
        > "$o/kernels_l.log" 2>&1
      echo "compact_kernels (model L) rc=$?"; tail -n 10 "$o/kernels_l.log"
      timeout 150 python3 benchmarks/compact_kernels.py measure --dir "$d/kernels_l128" --out "$o/l128" --number 20 \
        --repeat 5 > "$o/kernels_l128.log" 2>&1
      echo "compact_kernels (model L128) rc=$?"; tail -n 6 "$o/kernels_l128.log"
      local m=dram__bytes_read.sum,dram__bytes_write.sum,lts__t_bytes.sum,gpu__time_duration.sum
      m=$m,dram__throughput.avg.pct_of_peak_sustained_elapsed,lts__t_sector_hit_rate.pct
      m=$m,sm__warps_active.avg.pct_of_peak_sustained_active,launch__registers_per_thread,smsp__inst_executed.sum
      local ncu; ncu=$(command -v ncu || ls /usr/local/cuda*/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -n 1)
      for t in float32 float16 int8; do
        if [ -z "$ncu" ]; then echo "ncu: not found"; break; fi
        timeout 40 "$ncu" --clock-control none --kernel-name regex:cand --metrics "$m" --csv \
          python3 benchmarks/profile_kernel.py "$d/kernels/e_$t" B2048 default tuned all > "$o/ncu_e_$t.csv" 2> "$o/ncu_e_$t.err"
        echo "ncu $t rc=$? $(grep -c '"cand' "$o/ncu_e_$t.csv") rows"
      done ;;
    floor)
      timeout 150 python3 benchmarks/compact_kernels.py measure --dir "$d/kernels" --out "$o" --number 20 --repeat 5 \
        > "$o/kernels.log" 2>&1
      echo "compact_kernels (float32) rc=$?"; tail -n 22 "$o/kernels.log"
      local ncu; ncu=$(command -v ncu || ls /usr/local/cuda*/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -n 1)
      local bs sched
      # E's grid best with both searches and its tuned kernel; F's FGRID best at 512 (1.60x, 2026-12-07: why?)
      for job in "e B512 best512" "e B512 best512_lin16" "e B2048 lin16" "f B512 f_t128_r4_g2_i0"; do
        read -r mdl bs sched <<< "$job"  # (not `set --`: the tar below reads this function's $1)
        if [ -z "$ncu" ]; then echo "ncu: not found"; break; fi
        timeout 120 "$ncu" --clock-control none --kernel-name regex:cand --launch-skip 1 --launch-count 1 --set full \
          --import-source no -f -o "$o/ncu_${bs}_$sched" python3 benchmarks/profile_kernel.py "$d/kernels/${mdl}_float32" \
          "$bs" "$sched" > "$o/ncu_${bs}_$sched.log" 2>&1
        echo "ncu --set full $bs $sched rc=$?"
        "$ncu" --import "$o/ncu_${bs}_$sched.ncu-rep" --page details --csv > "$o/ncu_${bs}_${sched}_details.csv" 2>/dev/null
        "$ncu" --import "$o/ncu_${bs}_$sched.ncu-rep" --page source --csv --print-source sass \
          > "$o/ncu_${bs}_${sched}_sass.csv" 2>/dev/null
        "$ncu" --import "$o/ncu_${bs}_$sched.ncu-rep" --page raw --csv > "$o/ncu_${bs}_${sched}_raw.csv" 2>/dev/null
        echo "  pages: details $(wc -l < "$o/ncu_${bs}_${sched}_details.csv"), sass $(wc -l < "$o/ncu_${bs}_${sched}_sass.csv"), raw $(wc -c < "$o/ncu_${bs}_${sched}_raw.csv") bytes"
      done
      timeout 120 python3 benchmarks/gather_floor.py run --dir "$d/gather" --out "$o" > "$o/gather.log" 2>&1
      echo "gather_floor rc=$?"; cat "$o/gather.log" ;;
    suite) timeout ${SUITE_TIMEOUT:-560} python3 benchmarks/suite.py gpu --dir "$d/suite" --out "$o" --iters ${SUITE_ITERS:-20} > "$o/suite.log" 2>&1
           echo "suite rc=$?"; grep -v '^\s*$' "$o/suite.log" | tail -40 ;;
    hash) timeout 540 python3 benchmarks/gpu_device_hash.py run --dir "$d/dh" --out "$o" > "$o/hash.log" 2>&1
          echo "device hash rc=$?"; grep -v '^\s*$' "$o/hash.log" | tail -30 ;;
    dense_tune) timeout 300 python3 benchmarks/tune_models.py measure --round-dir "$d/round" --out "$o" > "$o/measure.log" 2>&1
                echo "dense tuning round rc=$?"; tail -20 "$o/measure.log" ;;
    seeded) timeout 300 python3 benchmarks/tune_models.py measure --round-dir "$d/round" --out "$o" > "$o/measure.log" 2>&1
            echo "seeded round rc=$?"; tail -20 "$o/measure.log" ;;
    dense_grid) timeout 540 python3 benchmarks/tune_models.py measure --round-dir "$d/round" --out "$o" > "$o/measure.log" 2>&1
                echo "dense grid (cold) rc=$?"; grep "failed or differ" "$o/measure.log" | cut -c1-140 ;;
    kernels) OUT=$o timeout 300 python3 benchmarks/request_kernels_gpu.py "$d/e" "$d/e_dlight" "$d/e_host_hash" \
               "$d/mixed100" > "$o/kernels.log" 2>&1
             echo "request kernels rc=$?"; grep -v '^\s*$' "$o/kernels.log" | grep -v Warning | tail -30 ;;
    *) echo "unknown call $1 (one of: $CALLS)" >&2; exit 2 ;;
  esac
  set -e
  tar -C "$o" -czf "${OUT:-.}/$1.tgz" .
}

case ${1:-} in
  prepare)
    shift
    [ -f .device/tvm_runtime_py312.tar.xz ] || bash ../shared/device/stage_runtime.sh .device
    for c in ${@:-$CALLS}; do prepare_one "$c"; done ;;
  run) run_one "${2:?which call: $CALLS}" ;;
  *) sed -n "2,/^set -euo/p" "$0" | sed "$ d"; exit 2 ;;
esac
