// A testing aid: VRAMFS_INJECT_FAULT makes chosen operations fail, so that
// the error paths are exercised without broken hardware.
//
// Store faults, done by a store decorator (store/faulty_store.h) that the
// daemon puts around its store only when one of them is asked for:
//
//   VRAMFS_INJECT_FAULT=copy:N     the Nth copy to or from the store fails (EIO)
//   VRAMFS_INJECT_FAULT=alloc:N    the Nth chunk the store takes fails (ENOSPC)
//   VRAMFS_INJECT_FAULT=sticky:N   the Nth copy fails as if the device were
//                                  lost: the store answers EIO from then on
//   VRAMFS_INJECT_FAULT=stall:N    the Nth wait for copies never sees them
//                                  finish, as if the GPU hung: the store
//                                  fails once copy_timeout has passed
//
// Faults of the daemon's life (daemon/server.cpp and the failover rules):
//
//   VRAMFS_INJECT_FAULT=slow_start:MS the daemon waits MS milliseconds after
//                                  mounting, before it reports success
//   VRAMFS_INJECT_FAULT=takeover_crash:N with -o failover, every server that
//                                  took over from a dead one aborts at its
//                                  Nth READ or WRITE (a crash loop on the
//                                  requests the kernel resends)
//   VRAMFS_INJECT_FAULT=single_process:1 the GPU is taken to admit one
//                                  process at a time (no standby server)
//   VRAMFS_INJECT_FAULT=resize_crash:N with -o failover, the first server
//                                  aborts in its Nth resize, half-way: a
//                                  shrink recorded but nothing given back,
//                                  or a grow's memory taken but not recorded
//   VRAMFS_INJECT_FAULT=takeover:N with -o failover, the Nth server started
//                                  to take over from a dead one, and every
//                                  one after it, fails to start
//
// The stores and the transports carry no hooks.  The tests fail a read of
// /dev/fuse from outside the daemon (tests/fail_fuse_read.cpp, preloaded),
// and the CUDA suite hands the cuda store an engine launch that fails
// (create_cuda_store's launch).
//
// Items may be combined with commas.  Counting starts at 1.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>

namespace vramfs {

class fault_injection {
 public:
  // Reads VRAMFS_INJECT_FAULT; an unparsable value is an error message.
  static std::optional<std::string> configure_from_environment();
  static std::optional<std::string> configure(const std::string &spec);

  // Whether a store fault is asked for: the store then gets its decorator.
  static bool store_faults() { return copy_at_ || alloc_at_ || sticky_at_ || stall_at_; }
  // Counts one operation; true when it is the one chosen to fail.
  static bool copy_fails() { return hit(copy_at_, copy_count_); }
  static bool alloc_fails() { return hit(alloc_at_, alloc_count_); }
  static bool copy_is_sticky_failure() { return hit(sticky_at_, sticky_count_); }
  static bool wait_stalls() { return hit(stall_at_, stall_count_); }
  static uint64_t takeover_crash_at() { return takeover_crash_at_; }
  static uint64_t resize_crash_at() { return resize_crash_at_; }
  static bool device_single_process() { return single_process_; }
  static uint64_t start_delay_ms() { return slow_start_ms_; }
  // Servers are separate processes: the keeper counts the takeovers.
  static bool takeover_fails(uint64_t takeover) { return takeover_at_ && takeover >= takeover_at_; }

 private:
  static bool hit(uint64_t at, std::atomic<uint64_t> &count) {
    return at && count.fetch_add(1, std::memory_order_relaxed) + 1 == at;
  }
  static inline uint64_t copy_at_ = 0, alloc_at_ = 0, sticky_at_ = 0, stall_at_ = 0,
                         takeover_at_ = 0, slow_start_ms_ = 0, takeover_crash_at_ = 0,
                         resize_crash_at_ = 0;
  static inline bool single_process_ = false;
  static inline std::atomic<uint64_t> copy_count_{0}, alloc_count_{0}, sticky_count_{0},
      stall_count_{0};
};

}  // namespace vramfs
