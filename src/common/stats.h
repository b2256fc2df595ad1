// Counters shown in the read-only file .stats at the root of the mount.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

namespace vramfs {

class block_store;
class extent_map;

struct stats {
  using counter = std::atomic<uint64_t>;
  counter reads{0}, writes{0}, read_bytes{0}, write_bytes{0};
  counter discards{0}, discard_bytes{0};
  counter cache_hits{0}, cache_misses{0};
  counter flushes{0};       // lines written back to the store
  counter fsyncs{0};
  counter errors{0};        // requests answered with an I/O error
  // Where a request's time goes on the daemon's side: the time spent in the
  // READ and WRITE operations, and the part of it waiting for store copies.
  counter read_ns{0}, write_ns{0};
  counter copy_waits{0}, copy_wait_ns{0};

  // How well the daemon is protected from waiting on its own swap
  // (docs/design.md, rule 1); set once at startup, before any worker exists.
  bool memory_locked = false;
  bool io_flusher = false;
  bool oom_protected = false;

  static void add(counter &c, uint64_t n = 1) { c.fetch_add(n, std::memory_order_relaxed); }
};

// The .stats text: one "key value" per line.
std::string render_stats(const stats &s, const block_store &store, const extent_map &extents,
                         uint64_t block_size, uint64_t cache_bytes, uint64_t dirty_lines,
                         uint64_t open_count);

}  // namespace vramfs
