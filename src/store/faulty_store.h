// The store faults a test asks for with VRAMFS_INJECT_FAULT
// (common/fault_injection.h), around a real store.  The daemon wraps its
// store in one only when the variable names a store fault; the stores
// themselves carry no hooks.
//
//   copy:N    the Nth copy is queued for real and then answered with EIO,
//             as when the driver refuses one piece of a copy: the caller
//             still waits for what it queued.
//   sticky:N  the Nth copy is queued and answered with EIO, and the store
//             is lost from then on: every call fails at once, as after a
//             sticky CUDA error.
//   stall:N   the Nth wait does not return until copy_timeout has passed,
//             and then fails the store, as when the GPU hangs.  The copies
//             themselves are done first, so no buffer is written later.
//   alloc:N   the Nth chunk that ensure_backed takes is given back, and the
//             call answers ENOSPC, as when the device is full; the chunks
//             taken before it stay.
#pragma once

#include "store/store_decorator.h"

#include <atomic>
#include <memory>
#include <mutex>

namespace vramfs {

class faulty_store : public store_decorator {
 public:
  explicit faulty_store(std::unique_ptr<block_store> inner) : store_decorator(std::move(inner)) {}

  bool failed() const override { return lost_ || inner_->failed(); }
  int submit_read(store_channel &ch, uint64_t offset, void *dst, size_t len) override;
  int submit_write(store_channel &ch, uint64_t offset, const void *src, size_t len) override;
  int wait(store_channel &ch) override;
  int ensure_backed(uint64_t offset, uint64_t len) override;

 private:
  // What a queued copy answers: its own result, or the injected failure.
  int after_submit(int err);
  void lose(const char *why);

  std::atomic<bool> lost_{false};
  // Chunks are taken one at a time, and counted by whether the store's
  // memory grew, so that only new chunks count.
  std::mutex backing_mutex_;
};

}  // namespace vramfs
