// A testing aid: VRAMFS_INJECT_FAULT makes chosen store operations fail, so
// the error paths are exercised without broken hardware.
//
//   VRAMFS_INJECT_FAULT=copy:N     the Nth copy to or from the store fails (EIO)
//   VRAMFS_INJECT_FAULT=alloc:N    the Nth lazy allocation fails (ENOSPC)
//   VRAMFS_INJECT_FAULT=sticky:N   the Nth copy fails as if the device were
//                                  lost: the store answers EIO from then on
//   VRAMFS_INJECT_FAULT=stall:N    the Nth wait for copies never sees them
//                                  finish, as if the GPU hung: the store
//                                  fails once copy_timeout has passed
//   VRAMFS_INJECT_FAULT=fuse_read:N the Nth read of /dev/fuse fails with EIO
//                                  (before it takes any request)
//   VRAMFS_INJECT_FAULT=slow_start:MS the daemon waits MS milliseconds after
//                                  mounting, before it reports success
//   VRAMFS_INJECT_FAULT=engine_launch:N the Nth launch of the GPU copy
//                                  engine fails, as on a GPU it cannot run on
//   VRAMFS_INJECT_FAULT=kernel_timeout:1 the GPU is taken to have a kernel
//                                  run-time limit (a display watchdog)
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
// The cuda store injects copy and sticky faults where it checks CUDA's
// result, after the copy was really queued, so that its error paths (a
// sticky error, the wait after a failed submit) run as they would for real.
//
// Items may be combined with commas.  Counting starts at 1.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>

namespace vramfs {

enum class fault_kind { copy, alloc, sticky, stall };

class fault_injection {
 public:
  // Reads VRAMFS_INJECT_FAULT; an unparsable value is an error message.
  static std::optional<std::string> configure_from_environment();
  static std::optional<std::string> configure(const std::string &spec);

  // Counts one operation; true when it is the one chosen to fail.
  static bool copy_fails() { return hit(copy_at_, copy_count_); }
  static bool alloc_fails() { return hit(alloc_at_, alloc_count_); }
  static bool copy_is_sticky_failure() { return hit(sticky_at_, sticky_count_); }
  static bool wait_stalls() { return hit(stall_at_, stall_count_); }
  static bool device_read_fails() { return hit(fuse_read_at_, fuse_read_count_); }
  static bool engine_launch_fails() { return hit(engine_launch_at_, engine_launch_count_); }
  static bool gpu_has_kernel_timeout() { return kernel_timeout_; }
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
                         takeover_at_ = 0, fuse_read_at_ = 0, slow_start_ms_ = 0,
                         engine_launch_at_ = 0, takeover_crash_at_ = 0, resize_crash_at_ = 0;
  static inline bool kernel_timeout_ = false, single_process_ = false;
  static inline std::atomic<uint64_t> copy_count_{0}, alloc_count_{0}, sticky_count_{0},
      stall_count_{0}, fuse_read_count_{0}, engine_launch_count_{0};
};

}  // namespace vramfs
