// What the copy engine's host side and its GPU kernel share: the layout of
// the pinned host memory through which copies are asked for and answered.
// Included by copy_engine.cpp (g++) and copy_kernel.cu (nvcc): plain C
// types only.
//
// One slot per requesting thread (a store channel), one worker warp of the
// kernel per slot.  The thread writes a batch of up to max_batch copies
// into its slot's request, the first of them into the request's first
// 64-byte line beside the batch's sequence number, and that number last;
// the warp polls that line, so that a one-copy batch (a 4 KiB swap-in)
// costs it one read over PCIe.  The GPU may read the line in two 32-byte
// halves at different moments, so the number is written in both halves
// (seq and seq_again): the line is taken only when they agree.  The warp
// copies, then writes the number into the slot's done word.  A request
// whose seq differs from done is a batch not yet served, whoever looks: a
// kernel launched after another parked serves what its predecessor left.
#pragma once

#include <cuda_runtime_api.h>
#include <stdint.h>

namespace vramfs::engine_abi {

constexpr unsigned slots_per_block = 8;  // one worker warp each
constexpr unsigned max_blocks = 8;
constexpr unsigned max_slots = slots_per_block * max_blocks;
constexpr unsigned max_batch = 33;       // the first copy, and 32 more: one a lane
constexpr unsigned threads_per_block = slots_per_block * 32;

struct copy_desc {
  uint64_t dst;  // device addresses: VRAM, or pinned host memory mapped for the GPU
  uint64_t src;
  uint64_t len;
};

struct alignas(64) request {
  // The line the warp polls: words 0-5 (seq, count, first.dst, first.src,
  // first.len, seq_again).
  volatile uint64_t seq;
  uint64_t count;
  copy_desc first;
  volatile uint64_t seq_again;
  uint64_t unused[2];
  copy_desc rest[max_batch - 1];  // read only when count > 1
};
static_assert(sizeof(copy_desc) == 24);
static_assert(__builtin_offsetof(request, seq_again) == 40);

struct alignas(64) done_word {
  volatile uint64_t seq;  // written by the GPU; a line each, so that a slot's
                          // answer does not disturb another slot's waiter
};

struct shared_area {
  done_word done[max_slots];
  // The epoch of the last launch that parked (every block gone); the host
  // relaunches when it equals the epoch it launched.
  alignas(64) volatile uint64_t parked_epoch;
  // Set by the host to stop the engine for good (teardown).
  alignas(64) volatile uint32_t stop;
  request requests[max_slots];
};

// Device memory the blocks of one launch coordinate through; zeroed before
// each launch.
struct grid_state {
  unsigned long long last_activity_ns;
  unsigned parking;
  unsigned exited_blocks;
};

// How the host starts the kernel (copy_kernel.cu's launch_copy_engine),
// after clearing grid on stream.  The engine is handed it, so that a test
// can hand it one that fails, as on a GPU the kernel cannot run on.
using launcher = cudaError_t (*)(shared_area *area, grid_state *grid, unsigned slots,
                                 uint64_t epoch, uint64_t park_ns, cudaStream_t stream);

}  // namespace vramfs::engine_abi
