// cuda-copy: the ceiling under vramfs-cuda.  Every 4 KiB page the swap path
// moves is, at best, one synchronous pinned copy between a cache line and
// VRAM; this measures what one such copy costs at the sizes that matter.
//
//   cuda-copy [DEVICE [ITERATIONS]]
//
// For 4 KiB, 64 KiB and 1 MiB, each direction: synchronous cudaMemcpy
// between pinned host memory and device memory, timed one by one after a
// warm-up; prints the median as
//   copy dir=h2d bs=4096 iterations=.. us=.. gbps=.. min_us=.. p99_us=..
// CUDA runtime API only.  Build with
//   nvcc -O2 -std=c++17 -x cu -o cuda-copy bench/cuda_copy.cpp
// or, without nvcc's host compiler rules,
//   g++ -O2 -std=c++17 -I/usr/local/cuda/include bench/cuda_copy.cpp
//       -L/usr/local/cuda/lib64 -lcudart_static -ldl -lrt -pthread -o cuda-copy
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

void check(cudaError_t err, const char *what) {
  if (err == cudaSuccess) return;
  fprintf(stderr, "cuda-copy: %s: %s\n", what, cudaGetErrorString(err));
  exit(err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver ? 77 : 1);
}

struct pinned {
  void *p = nullptr;
  explicit pinned(size_t len) { check(cudaMallocHost(&p, len), "cudaMallocHost"); }
  ~pinned() { cudaFreeHost(p); }
  pinned(const pinned &) = delete;
  pinned &operator=(const pinned &) = delete;
};

struct device_buffer {
  void *p = nullptr;
  explicit device_buffer(size_t len) { check(cudaMalloc(&p, len), "cudaMalloc"); }
  ~device_buffer() { cudaFree(p); }
  device_buffer(const device_buffer &) = delete;
  device_buffer &operator=(const device_buffer &) = delete;
};

double percentile(std::vector<double> &v, double q) {
  size_t k = size_t(q * double(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + long(k), v.end());
  return v[k];
}

void measure(bool h2d, size_t bs, int iterations, void *host, void *dev) {
  cudaMemcpyKind kind = h2d ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost;
  void *dst = h2d ? dev : host;
  const void *src = h2d ? host : dev;
  for (int i = 0; i < 50; ++i) check(cudaMemcpy(dst, src, bs, kind), "warm-up copy");
  std::vector<double> us(static_cast<size_t>(iterations));
  for (auto &u : us) {
    auto t0 = std::chrono::steady_clock::now();
    check(cudaMemcpy(dst, src, bs, kind), "cudaMemcpy");
    u = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
  }
  double min = *std::min_element(us.begin(), us.end());
  double p99 = percentile(us, 0.99), median = percentile(us, 0.5);
  printf("copy dir=%s bs=%zu iterations=%d us=%.2f gbps=%.3f min_us=%.2f p99_us=%.2f\n",
         h2d ? "h2d" : "d2h", bs, iterations, median, double(bs) / median / 1e3, min, p99);
}

}  // namespace

int main(int argc, char **argv) {
  int device = argc > 1 ? atoi(argv[1]) : 0;
  int iterations = argc > 2 ? atoi(argv[2]) : 2000;
  if (iterations < 1) iterations = 1;
  int count = 0;
  check(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
  if (device < 0 || device >= count) {
    fprintf(stderr, "cuda-copy: no CUDA device %d (%d found)\n", device, count);
    return 77;
  }
  check(cudaSetDevice(device), "cudaSetDevice");
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  printf("# cuda-copy device=%d name=\"%s\" pci=%04x:%02x:%02x\n", device, prop.name,
         prop.pciDomainID, prop.pciBusID, prop.pciDeviceID);
  const size_t sizes[] = {4096, 65536, 1 << 20};
  const size_t largest = sizes[2];
  pinned host(largest);
  device_buffer dev(largest);
  memset(host.p, 0xA5, largest);
  check(cudaMemset(dev.p, 0x5A, largest), "cudaMemset");
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  for (size_t bs : sizes)
    for (bool h2d : {true, false})
      measure(h2d, bs, bs >= largest ? iterations / 4 + 1 : iterations, host.p, dev.p);
  return 0;
}
