// The copy engine's GPU side: a resident kernel that serves small copies
// between VRAM and pinned host memory, asked for through doorbells in host
// memory (copy_engine_abi.h), so that a 4 KiB copy costs no driver call.
//
// Each block serves 8 slots: warp 8 polls their 8 doorbells with one read
// over PCIe and hands a new batch to the slot's worker warp through shared
// memory; worker warp w copies its slot's batch, fences so that the data is
// visible to the host before the done word, and writes done.  When no
// doorbell has moved for park_ns anywhere in the grid, every block leaves,
// and the last one out writes the launch's epoch into parked_epoch: an idle
// GPU runs nothing.  A batch posted to a worker is always finished before
// its block leaves.
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
  __shared__ volatile uint64_t posted[slots_per_block];
  __shared__ volatile int quit;
  const unsigned warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const unsigned base = blockIdx.x * slots_per_block;

  if (threadIdx.x < slots_per_block) {
    unsigned slot = base + threadIdx.x;
    // What the host already had served: anything newer in the doorbell is
    // pending, left by a launch that parked under it.
    posted[threadIdx.x] = slot < slots ? area->done[slot] : 0;
  }
  if (threadIdx.x == 0) quit = 0;
  __syncthreads();

  if (warp == slots_per_block) {
    // The polling warp.
    unsigned slot = base + lane;
    bool mine = lane < slots_per_block && slot < slots;
    if (lane == 0) atomicMax(&grid->last_activity_ns, now_ns());
    for (;;) {
      bool moved = false;
      if (mine) {
        uint64_t bell = area->doorbell[slot];
        if (bell != posted[lane]) {
          __threadfence_block();
          posted[lane] = bell;
          moved = true;
        }
      }
      bool any = __any_sync(0xffffffffu, moved);
      int leave = 0;
      if (lane == 0) {
        unsigned long long t = now_ns();
        if (any) {
          atomicMax(&grid->last_activity_ns, t);
        } else if (area->stop || *(volatile unsigned *)&grid->parking) {
          leave = 1;
        } else if (t - *(volatile unsigned long long *)&grid->last_activity_ns > park_ns) {
          // Idle everywhere: every block leaves, and a doorbell rung from
          // now on waits for the next launch.
          atomicExch(&grid->parking, 1u);
          leave = 1;
        }
      }
      if (__shfl_sync(0xffffffffu, leave, 0)) break;
      __nanosleep(200);
    }
    if (lane == 0) {
      __threadfence_block();  // what was posted is seen before quit
      quit = 1;
    }
  } else {
    // A worker warp: its slot's batches, in order.
    unsigned slot = base + warp;
    if (slot < slots) {
      uint64_t seen = posted[warp];
      for (;;) {
        uint64_t want = posted[warp];
        if (want == seen) {
          if (quit) {
            __threadfence_block();
            if (posted[warp] == seen) break;  // nothing was posted before quit
            continue;
          }
          __nanosleep(100);
          continue;
        }
        __threadfence();  // the batch's descriptors after its doorbell
        const request &req = area->requests[slot];
        unsigned count = *(volatile uint32_t *)&req.count;
        if (count > max_batch) count = max_batch;
        copy_desc mine{};
        if (lane < count) {
          const volatile copy_desc *d = &req.copies[lane];
          mine.dst = d->dst;
          mine.src = d->src;
          mine.len = d->len;
        }
        for (unsigned c = 0; c < count; ++c) {
          uint64_t dst = __shfl_sync(0xffffffffu, mine.dst, c);
          uint64_t src = __shfl_sync(0xffffffffu, mine.src, c);
          uint64_t len = __shfl_sync(0xffffffffu, mine.len, c);
          warp_copy(reinterpret_cast<char *>(dst), reinterpret_cast<const char *>(src), len, lane);
        }
        // Every lane's data reaches host memory and VRAM before done does.
        __threadfence_system();
        __syncwarp();
        if (lane == 0) area->done[slot] = want;
        seen = want;
      }
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
