// The copy engine's GPU side: a resident kernel that serves small copies
// between VRAM and pinned host memory, asked for through requests in host
// memory (copy_engine_abi.h), so that a 4 KiB copy costs no driver call.
//
// Each warp serves one slot: it polls the first line of its slot's
// request, copies the batch, fences so that the data is visible to the
// host before the done word, and writes done.  When no request has come
// for park_ns anywhere in the grid, every warp leaves, and the last block
// out writes the launch's epoch into parked_epoch: an idle GPU runs
// nothing.  A batch a warp has seen is always finished before it leaves.
#include "store/copy_engine_abi.h"

#include <cuda_runtime.h>

namespace vramfs {
namespace {

using namespace engine_abi;

__device__ __forceinline__ unsigned long long now_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// One warp copies len bytes, with the widest accesses the alignment
// allows; each lane keeps several loads in flight, since a load from host
// memory crosses PCIe.
__device__ void warp_copy(char *dst, const char *src, uint64_t len, unsigned lane) {
  uint64_t align = (uint64_t(dst) | uint64_t(src) | len);
  if ((align & 15) == 0) {
    auto *d = reinterpret_cast<uint4 *>(dst);
    auto *s = reinterpret_cast<const uint4 *>(src);
    uint64_t n = len / 16;
    constexpr unsigned in_flight = 8;
    uint64_t i = lane;
    for (; i + 32 * (in_flight - 1) < n; i += 32 * in_flight) {
      uint4 v[in_flight];
#pragma unroll
      for (unsigned k = 0; k < in_flight; ++k) v[k] = s[i + 32 * k];
#pragma unroll
      for (unsigned k = 0; k < in_flight; ++k) d[i + 32 * k] = v[k];
    }
    for (; i < n; i += 32) d[i] = s[i];
  } else if ((align & 3) == 0) {
    auto *d = reinterpret_cast<unsigned *>(dst);
    auto *s = reinterpret_cast<const unsigned *>(src);
    for (uint64_t i = lane; i < len / 4; i += 32) d[i] = s[i];
  } else {
    for (uint64_t i = lane; i < len; i += 32) dst[i] = src[i];
  }
}

__global__ void __launch_bounds__(threads_per_block)
    copy_engine_kernel(shared_area *area, grid_state *grid, unsigned slots, uint64_t epoch,
                       uint64_t park_ns) {
  const unsigned warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const unsigned slot = blockIdx.x * slots_per_block + warp;
  const unsigned full = 0xffffffffu;
  if (slot < slots) {
    request &req = area->requests[slot];
    // What the host already had served: a newer seq is pending, left by a
    // launch that parked under it.
    uint64_t seen = area->done[slot].seq;
    if (lane == 0) atomicMax(&grid->last_activity_ns, now_ns());
    for (;;) {
      // The poll: one read of the request's first line, a word a lane.
      uint64_t word = 0;
      if (lane < 6) word = reinterpret_cast<volatile uint64_t *>(&req)[lane];
      uint64_t seq = __shfl_sync(full, word, 0);
      if (seq != seen) {
        if (__shfl_sync(full, word, 5) != seq) continue;  // read half old, half new
        if (lane == 0) atomicMax(&grid->last_activity_ns, now_ns());
        unsigned count = unsigned(__shfl_sync(full, word, 1));
        if (count > max_batch) count = max_batch;
        uint64_t dst = __shfl_sync(full, word, 2), src = __shfl_sync(full, word, 3),
                 len = __shfl_sync(full, word, 4);
        if (count) warp_copy(reinterpret_cast<char *>(dst), reinterpret_cast<const char *>(src), len, lane);
        if (count > 1) {
          // The rest of the batch, a descriptor a lane, in one round trip.
          copy_desc mine{};
          if (lane + 1 < count) {
            const volatile copy_desc *d = &req.rest[lane];
            mine.dst = d->dst;
            mine.src = d->src;
            mine.len = d->len;
          }
          for (unsigned c = 1; c < count; ++c) {
            dst = __shfl_sync(full, mine.dst, c - 1);
            src = __shfl_sync(full, mine.src, c - 1);
            len = __shfl_sync(full, mine.len, c - 1);
            warp_copy(reinterpret_cast<char *>(dst), reinterpret_cast<const char *>(src), len, lane);
          }
        }
        // Every lane's data reaches host memory and VRAM before done does.
        __threadfence_system();
        __syncwarp();
        if (lane == 0) area->done[slot].seq = seq;
        seen = seq;
        continue;
      }
      int leave = 0;
      if (lane == 0) {
        // Times from different SMs may be out of order by a little: idle
        // only counts once the clock is past the last activity.
        unsigned long long t = now_ns();
        unsigned long long last = *(volatile unsigned long long *)&grid->last_activity_ns;
        if (*(volatile unsigned *)&grid->parking) {
          leave = 1;
        } else if (t > last && t - last > park_ns) {
          atomicExch(&grid->parking, 1u);
          leave = 1;
        } else if (t > last && t - last > 1000000 && area->stop) {
          leave = 1;  // teardown: no waiting for the park
        }
      }
      if (__shfl_sync(full, leave, 0)) break;
      __nanosleep(100);
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    if (atomicAdd(&grid->exited_blocks, 1u) + 1 == gridDim.x) {
      __threadfence_system();
      area->parked_epoch = epoch;
    }
  }
}

}  // namespace

// Launches the engine on `stream` after clearing its grid state there, so
// that it starts only once the previous launch on the stream has ended.
cudaError_t launch_copy_engine(engine_abi::shared_area *area, engine_abi::grid_state *grid,
                               unsigned slots, uint64_t epoch, uint64_t park_ns,
                               cudaStream_t stream) {
  if (cudaError_t err = cudaMemsetAsync(grid, 0, sizeof *grid, stream)) return err;
  unsigned blocks = (slots + slots_per_block - 1) / slots_per_block;
  copy_engine_kernel<<<blocks, threads_per_block, 0, stream>>>(area, grid, slots, epoch, park_ns);
  return cudaGetLastError();
}

}  // namespace vramfs
