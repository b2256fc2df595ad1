// What the copy engine's host side and its GPU kernel share: the layout of
// the pinned host memory through which copies are asked for and answered.
// Included by copy_engine.cpp (g++) and copy_kernel.cu (nvcc): plain C
// types only.
//
// One slot per requesting thread (a store channel).  The thread writes up
// to max_batch copies into its slot's request, then the batch's sequence
// number into its doorbell; the kernel copies and writes the same number
// into done.  A doorbell that differs from done is a batch not yet served,
// whoever looks: a kernel launched after another parked serves what its
// predecessor left.  Doorbells sit 8 to a 64-byte line, so that one read
// over PCIe polls 8 slots.
#pragma once

#include <stdint.h>

namespace vramfs::engine_abi {

constexpr unsigned slots_per_block = 8;  // one worker warp each
constexpr unsigned max_blocks = 8;
constexpr unsigned max_slots = slots_per_block * max_blocks;
constexpr unsigned max_batch = 32;       // one descriptor per lane of a warp
constexpr unsigned threads_per_block = (slots_per_block + 1) * 32;  // + the polling warp

struct copy_desc {
  uint64_t dst;  // device addresses: VRAM, or pinned host memory mapped for the GPU
  uint64_t src;
  uint64_t len;
};

struct alignas(64) request {
  uint32_t count;
  uint32_t unused[15];
  copy_desc copies[max_batch];
};

struct shared_area {
  volatile uint64_t doorbell[max_slots];  // written by the host
  volatile uint64_t done[max_slots];      // written by the GPU
  // The epoch of the last launch that parked (every block gone); the host
  // relaunches when it equals the epoch it launched.
  alignas(64) volatile uint64_t parked_epoch;
  // Set by the host to stop the engine for good (teardown).
  alignas(64) volatile uint32_t stop;
  alignas(64) request requests[max_slots];
};

// Device memory the blocks of one launch coordinate through; zeroed before
// each launch.
struct grid_state {
  unsigned long long last_activity_ns;
  unsigned parking;
  unsigned exited_blocks;
};

}  // namespace vramfs::engine_abi
