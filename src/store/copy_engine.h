// The copy engine: small copies between VRAM and pinned host memory done
// by a resident GPU kernel (store/copy_kernel.cu) instead of the driver.
//
// A 4 KiB cudaMemcpyAsync costs about 7 µs on the H100 machine, most of it
// the driver call; the kernel, asked through a doorbell in pinned host
// memory and answered through a done word the CPU polls, does it in about
// 4 (docs/performance.md).  The cuda store sends a channel's small copies
// here and the rest to the DMA engines.
//
// Threading: each channel's thread owns one slot (take_slot(), before the
// mount) and is the only one to touch it, so requesting threads share no
// lock.  The kernel parks when no doorbell moved for park_after, so an
// idle GPU runs nothing; the next wait() relaunches it, under the one
// launch mutex.  Launches go to the engine's own stream, so a relaunch
// starts only once the parked kernel has ended.
#pragma once

#include "store/copy_engine_abi.h"

#include <cuda_runtime.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

namespace vramfs {

class copy_engine {
 public:
  // Sets up the shared memory and the stream on the current device; the
  // kernel starts with the first wait(), through launch (nullptr: the real
  // launch_copy_engine).  nullptr with *why on failure.
  static std::unique_ptr<copy_engine> create(std::chrono::nanoseconds park_after, std::string *why,
                                             engine_abi::launcher launch = nullptr);
  ~copy_engine();
  copy_engine(const copy_engine &) = delete;
  copy_engine &operator=(const copy_engine &) = delete;

  // A slot for one channel's thread, or -1 when every slot is taken (that
  // channel copies with DMA).
  int take_slot();

  // Adds a copy to the slot's next batch; false when the batch is full.
  // Both pointers must be reachable by the GPU: VRAM, or pinned host
  // memory at its host address.
  bool add(int slot, void *dst, const void *src, size_t len);
  unsigned pending(int slot) const { return slots_[slot].pending; }
  // Copy i of the pending batch, for a caller that copies them another way
  // (run() answered -ENODEV); clear() drops them.
  const engine_abi::copy_desc &batch_copy(int slot, unsigned i) const {
    const engine_abi::request &r = area_->requests[slot];
    return i ? r.rest[i - 1] : r.first;
  }
  void clear(int slot) { slots_[slot].pending = 0; }

  // Posts the pending batch and waits until it is done: 0; -ETIMEDOUT
  // when it is not done within `limit` (the GPU is stalled: its copies may
  // still land later); -ENODEV when no running kernel can take it (its
  // launch failed, or it was parked: it is launched again for the next
  // batch, and this one, still pending, goes to DMA at once instead of
  // waiting for the launch).
  int run(int slot, std::chrono::nanoseconds limit);

  // Whether the engine is out of use for good (a launch failed).
  bool disabled() const { return disabled_.load(std::memory_order_relaxed); }
  // Launches so far: 1 + the relaunches after it parked.
  uint64_t launches() const { return launched_epoch_.load(std::memory_order_relaxed); }
  bool running() const { return !parked(); }
  // After the device is lost: the destructor leaves the driver alone.
  void abandon() { abandoned_ = true; }

 private:
  copy_engine() = default;
  bool parked() const {
    return area_->parked_epoch == launched_epoch_.load(std::memory_order_acquire);
  }
  // Starts the kernel again if it is parked; false if the launch failed.
  bool relaunch();

  struct alignas(64) slot_state {
    uint64_t seq = 0;
    unsigned pending = 0;
  };

  engine_abi::shared_area *area_ = nullptr;  // pinned, mapped host memory
  engine_abi::grid_state *grid_ = nullptr;   // device memory
  cudaStream_t stream_ = nullptr;
  std::chrono::nanoseconds park_after_{};
  engine_abi::launcher launch_ = nullptr;
  slot_state slots_[engine_abi::max_slots];
  std::atomic<unsigned> slots_taken_{0};
  std::atomic<uint64_t> launched_epoch_{0};
  std::atomic<unsigned> launched_slots_{0};  // the slots the running kernel polls
  std::mutex launch_mutex_;
  std::atomic<bool> disabled_{false};
  bool abandoned_ = false;
};

}  // namespace vramfs
