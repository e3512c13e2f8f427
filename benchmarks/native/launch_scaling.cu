// Do requests of a few tiny launches scale over host threads in one CUDA context, without a GIL?
//
// benchmarks/launch_scaling.py asks the same through PyTorch, whose launches hold the GIL, so it cannot separate
// the driver from the interpreter. Here each pthread owns a non-blocking stream, pinned and device buffers and a
// CUDA graph, and runs "requests" shaped like a small recom_tvm request's device part:
//   launch       K tiny kernels, stream sync
//   graph        one graph launch of the same K kernels, stream sync
//   copy_launch  H2D of the packed input (pinned), K kernels, D2H of the output, stream sync
//   copy_graph   the same three steps as one graph launch, stream sync
// It prints requests per second for each thread count and mode. Build on the host (nvcc, no GPU needed):
//   nvcc -O2 -arch=sm_90 -o launch_scaling benchmarks/native/launch_scaling.cu -lpthread
//   ./launch_scaling [K=6] [requests per thread=4000] [input bytes=16384]
#include <cuda_runtime.h>
#include <pthread.h>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#define CHECK(x)                                                                        \
  do {                                                                                  \
    cudaError_t e_ = (x);                                                               \
    if (e_ != cudaSuccess) {                                                            \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                     \
    }                                                                                   \
  } while (0)

__global__ void add_one(const float* x, float* y, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = x[i] + 1.0f;
}

static int K = 6, REQUESTS = 4000;
static size_t IN_BYTES = 16384;
static const int N = 32 * 128;

struct Worker {
  cudaStream_t stream;
  float *x, *y, *host_in, *host_out;
  cudaGraphExec_t graph, copy_graph;

  void kernels() {
    for (int k = 0; k < K; ++k) add_one<<<(N + 255) / 256, 256, 0, stream>>>(x, y, N);
  }
  void copies_and_kernels() {
    CHECK(cudaMemcpyAsync(x, host_in, IN_BYTES, cudaMemcpyHostToDevice, stream));
    kernels();
    CHECK(cudaMemcpyAsync(host_out, y, N * sizeof(float), cudaMemcpyDeviceToHost, stream));
  }
  cudaGraphExec_t capture(bool copies) {
    cudaGraph_t g;
    CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    if (copies) copies_and_kernels(); else kernels();
    CHECK(cudaStreamEndCapture(stream, &g));
    cudaGraphExec_t e;
    CHECK(cudaGraphInstantiate(&e, g, 0));
    CHECK(cudaGraphDestroy(g));
    return e;
  }
  void init() {
    CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    size_t xs = IN_BYTES > N * sizeof(float) ? IN_BYTES : N * sizeof(float);
    CHECK(cudaMalloc(&x, xs));
    CHECK(cudaMalloc(&y, N * sizeof(float)));
    CHECK(cudaMallocHost(&host_in, IN_BYTES));
    CHECK(cudaMallocHost(&host_out, N * sizeof(float)));
    graph = capture(false);
    copy_graph = capture(true);
  }
  void request(int mode) {
    switch (mode) {
      case 0: kernels(); break;
      case 1: CHECK(cudaGraphLaunch(graph, stream)); break;
      case 2: copies_and_kernels(); break;
      default: CHECK(cudaGraphLaunch(copy_graph, stream)); break;
    }
    CHECK(cudaStreamSynchronize(stream));
  }
};

struct Run {
  Worker* w;
  int mode;
  pthread_barrier_t* barrier;
};

static void* body(void* p) {
  Run* r = static_cast<Run*>(p);
  for (int i = 0; i < 50; ++i) r->w->request(r->mode);  // warm-up
  pthread_barrier_wait(r->barrier);
  for (int i = 0; i < REQUESTS; ++i) r->w->request(r->mode);
  return nullptr;
}

static double rate(std::vector<Worker>& workers, int threads, int mode) {
  pthread_barrier_t barrier;
  pthread_barrier_init(&barrier, nullptr, threads + 1);
  std::vector<pthread_t> ids(threads);
  std::vector<Run> runs(threads);
  for (int t = 0; t < threads; ++t) {
    runs[t] = Run{&workers[t], mode, &barrier};
    pthread_create(&ids[t], nullptr, body, &runs[t]);
  }
  pthread_barrier_wait(&barrier);
  auto t0 = std::chrono::steady_clock::now();
  for (auto& id : ids) pthread_join(id, nullptr);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  pthread_barrier_destroy(&barrier);
  return threads * double(REQUESTS) / s;
}

int main(int argc, char** argv) {
  if (argc > 1) K = std::atoi(argv[1]);
  if (argc > 2) REQUESTS = std::atoi(argv[2]);
  if (argc > 3) IN_BYTES = std::strtoul(argv[3], nullptr, 10);
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("{\"device\": \"%s\", \"kernels\": %d, \"requests_per_thread\": %d, \"input_bytes\": %zu, \"rates\": {\n",
              prop.name, K, REQUESTS, IN_BYTES);
  const int counts[] = {1, 2, 4, 8};
  std::vector<Worker> workers(8);
  for (auto& w : workers) w.init();
  const char* names[] = {"launch", "graph", "copy_launch", "copy_graph"};
  for (int mode = 0; mode < 4; ++mode) {
    std::printf("  \"%s\": {", names[mode]);
    for (int i = 0; i < 4; ++i) std::printf("%s\"%d\": %.0f", i ? ", " : "", counts[i], rate(workers, counts[i], mode));
    std::printf("}%s\n", mode < 3 ? "," : "");
    std::fflush(stdout);
  }
  std::printf("}}\n");
  return 0;
}
