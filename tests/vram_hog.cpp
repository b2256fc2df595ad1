// vram-hog: another program that takes the GPU's memory, for the tests of
// a lazy vramfs on a full GPU and of vramswap's elastic mode.
//
//   vram-hog DEVICE LEAVE_MIB
//   vram-hog DEVICE --steps STEP_MIB TOTAL_MIB RETRY_SECONDS
//
// The first form allocates device memory until only about LEAVE_MIB are
// free.  The second takes TOTAL_MIB in allocations of STEP_MIB, as a
// program whose allocator retries would: a step that fails is tried again
// every 50 ms for up to RETRY_SECONDS, and each step prints "step K: N MiB
// in S s" (the time from its first try); a step that never succeeds ends
// it with status 3.  Both print "holding N MiB, M MiB free" and hold the
// memory until stdin reaches end of file or a signal ends it; exit frees
// everything.  Exits 77 without a GPU.
#include <cuda_runtime_api.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

namespace {

void check(cudaError_t err, const char *what) {
  if (err == cudaSuccess) return;
  fprintf(stderr, "vram-hog: %s: %s\n", what, cudaGetErrorString(err));
  exit(err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver ? 77 : 1);
}

constexpr size_t mib = size_t(1) << 20;

// Takes TOTAL in pieces of STEP, each retried for up to RETRY seconds.
bool take_in_steps(size_t step, size_t total, double retry, std::vector<void *> *held,
                   size_t *total_held) {
  using clock = std::chrono::steady_clock;
  for (size_t k = 1; *total_held < total; ++k) {
    size_t piece = std::min(step, total - *total_held);
    auto first_try = clock::now();
    void *p = nullptr;
    while (cudaMalloc(&p, piece) != cudaSuccess) {
      cudaGetLastError();
      if (std::chrono::duration<double>(clock::now() - first_try).count() > retry) {
        fprintf(stderr, "vram-hog: step %zu: %zu MiB not free after %.0f s\n", k, piece / mib,
                retry);
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    held->push_back(p);
    *total_held += piece;
    printf("step %zu: %zu MiB in %.3f s\n", k, piece / mib,
           std::chrono::duration<double>(clock::now() - first_try).count());
    fflush(stdout);
  }
  return true;
}

// Takes memory until only about LEAVE is free: big pieces first, then
// smaller ones, down to 2 MiB (the granularity).
void take_until_free(size_t leave, std::vector<void *> *held, size_t *total_held) {
  size_t free_bytes = 0, total = 0;
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
    held->push_back(p);
    *total_held += piece;
  }
}

}  // namespace

int main(int argc, char **argv) {
  bool steps = argc == 6 && strcmp(argv[2], "--steps") == 0;
  if (argc != 3 && !steps) {
    fprintf(stderr,
            "usage: vram-hog DEVICE LEAVE_MIB\n"
            "       vram-hog DEVICE --steps STEP_MIB TOTAL_MIB RETRY_SECONDS\n");
    return 2;
  }
  check(cudaSetDevice(atoi(argv[1])), "cudaSetDevice");
  std::vector<void *> held;
  size_t total_held = 0, free_bytes = 0, total = 0;
  if (!steps) {
    take_until_free(size_t(atoll(argv[2])) * mib, &held, &total_held);
  } else if (!take_in_steps(size_t(atoll(argv[3])) * mib, size_t(atoll(argv[4])) * mib,
                            atof(argv[5]), &held, &total_held)) {
    return 3;
  }
  check(cudaMemGetInfo(&free_bytes, &total), "cudaMemGetInfo");
  printf("holding %zu MiB, %zu MiB free\n", total_held / mib, free_bytes / mib);
  fflush(stdout);
  char c;
  while (read(0, &c, 1) > 0) {
  }
  return 0;
}
