// What a mount keeps about itself besides the data: its counters, the
// terms INIT settled, the data file's opens and times, and the failover
// bookkeeping.  With -o failover it lives in memory shared with the keeper
// (failover/state_region.h), so that a restarted server carries on where
// the dead one stopped; otherwise in the daemon's own memory.  Plain data
// and lock-free atomics only: nothing in it points into one process.
#pragma once

#include "common/stats.h"

#include <atomic>
#include <cstdint>
#include <ctime>

namespace vramfs {

// What INIT settled: kept for the log, .stats, the transports and a server
// that takes the connection over without a new INIT.
struct connection_terms {
  uint32_t minor = 0;
  uint32_t max_write = 0;
  uint16_t max_pages = 0;
  uint16_t max_background = 0;
  uint16_t congestion_threshold = 0;
  bool async_dio = false;
  bool io_uring = false;
};

// Whether a standby server waits to take over (-o failover,standby).
enum class standby_state : uint32_t { off = 0, starting = 1, ready = 2, unavailable = 3 };

struct mount_state {
  mount_state();

  stats counters;
  // The open handles of the data file not yet released, one slot each
  // holding the OPEN request's id (0: free): while any is held (a loop
  // device holds one), the daemon refuses to stop.  A slot per handle, not
  // a count, so that an OPEN or RELEASE that a dead server had applied
  // but not answered, and that the kernel sends again, is not counted
  // twice.
  static constexpr unsigned max_data_handles = 512;
  std::atomic<uint64_t> data_handles[max_data_handles];
  // OPEN of the data file: the handle for request `id` (the same one again
  // for a resent request); 0 when every slot is taken.
  uint64_t open_data(uint64_t id);
  void release_data(uint64_t handle);
  uint64_t data_opens() const;
  // The data file's size now (it changes with truncate, within the store's
  // max_size): what a server that takes over serves.  A resize records the
  // new size here before it takes effect (page_cache::resize).
  std::atomic<uint64_t> file_size{0};
  // The resizes so far, and the last one: from and to (bytes), and when
  // (CLOCK_REALTIME seconds).
  std::atomic<uint64_t> resizes{0};
  std::atomic<uint64_t> last_resize_from{0}, last_resize_to{0};
  std::atomic<int64_t> last_resize_time{0};
  // Set once INIT is answered; terms is written before it.
  std::atomic<uint32_t> initialized{0};
  connection_terms terms;
  timespec mounted_at, data_mtime, data_ctime;

  // Failover: how often a server was restarted, how long the last takeover
  // took, and who keeps the mount.
  std::atomic<uint64_t> restarts{0};
  std::atomic<uint64_t> last_takeover_us{0};
  std::atomic<int32_t> keeper_pid{0};
  std::atomic<uint32_t> keeper_alive{0};
  std::atomic<uint32_t> failed{0};  // no server could be restarted
  std::atomic<standby_state> standby{standby_state::off};
  // transport=uring: ring entries the kernel refused to register.
  std::atomic<uint64_t> uring_refused{0};
  // CLOCK_MONOTONIC µs of the last server's death (the keeper's), and how
  // long until its successor answered a request.
  std::atomic<uint64_t> last_death_us{0};
  std::atomic<uint64_t> last_pause_us{0};
};

static_assert(std::atomic<uint64_t>::is_always_lock_free);

}  // namespace vramfs
