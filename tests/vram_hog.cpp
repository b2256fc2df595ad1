// vram-hog: another program that takes the GPU's memory, for the test of a
// lazy vramfs on a full GPU.
//
//   vram-hog DEVICE LEAVE_MIB
//
// Allocates device memory until only about LEAVE_MIB are free, prints
// "holding N MiB, M MiB free", and holds it until stdin reaches end of file
// or a signal ends it; exit frees everything.  Exits 77 without a GPU.
#include <cuda_runtime_api.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

void check(cudaError_t err, const char *what) {
  if (err == cudaSuccess) return;
  fprintf(stderr, "vram-hog: %s: %s\n", what, cudaGetErrorString(err));
  exit(err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver ? 77 : 1);
}

}  // namespace

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: vram-hog DEVICE LEAVE_MIB\n");
    return 2;
  }
  check(cudaSetDevice(atoi(argv[1])), "cudaSetDevice");
  const size_t mib = size_t(1) << 20, leave = size_t(atoll(argv[2])) * mib;
  std::vector<void *> held;
  size_t total_held = 0, free_bytes = 0, total = 0;
  // Big pieces first, then smaller ones, down to 2 MiB (the granularity).
  for (size_t piece = size_t(1) << 30; piece >= 2 * mib;) {
    check(cudaMemGetInfo(&free_bytes, &total), "cudaMemGetInfo");
    if (free_bytes < leave + piece) {
      piece /= 2;
      continue;
    }
    void *p = nullptr;
    if (cudaMalloc(&p, piece) != cudaSuccess) {
      cudaGetLastError();
      piece /= 2;
      continue;
    }
    held.push_back(p);
    total_held += piece;
  }
  check(cudaMemGetInfo(&free_bytes, &total), "cudaMemGetInfo");
  printf("holding %zu MiB, %zu MiB free\n", total_held / mib, free_bytes / mib);
  fflush(stdout);
  char c;
  while (read(0, &c, 1) > 0) {
  }
  return 0;
}
