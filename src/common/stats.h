// The counters behind the read-only file .stats (fuse/stats_text.h says
// what each one means and how it is shown).
//
// Every request adds to several counters.  Shared atomics that every
// serving thread writes would bounce their cache lines between CPUs on
// each request, so each thread adds to a shard of its own (one cache line
// a shard), and a reader of .stats sums the shards.  The struct is plain
// data that may live in memory shared with a successor server: a new
// server's threads take shards again and the sums carry on.
#pragma once

#include <atomic>
#include <cstdint>

namespace vramfs {

struct stats {
  using counter = std::atomic<uint64_t>;
  struct alignas(64) shard {
    counter reads{0}, writes{0}, read_bytes{0}, write_bytes{0};
    counter discards{0}, discard_bytes{0};
    counter cache_hits{0}, cache_misses{0};
    counter flushes{0};  // lines written back to the store
    counter fsyncs{0};
    counter errors{0};   // requests answered with an I/O error
    // Where a request's time goes on the daemon's side: the time spent in
    // the READ and WRITE operations, and the part of it waiting for store
    // copies.
    counter read_ns{0}, write_ns{0};
    counter copy_waits{0}, copy_wait_ns{0};
  };
  static constexpr unsigned shard_count = 64;
  shard shards[shard_count];

  // How well the daemon is protected from waiting on its own swap
  // (docs/design.md, rule 1); set once at startup, before any worker exists.
  bool memory_locked = false;
  bool io_flusher = false;
  bool oom_protected = false;

  // The calling thread's shard: threads take shards in turn as they first
  // count something; more threads than shards share them, still atomically.
  shard &mine() { return shards[thread_shard()]; }
  // The sum of one counter over every shard.
  uint64_t total(counter shard::*which) const;

  static void add(counter &c, uint64_t n = 1) { c.fetch_add(n, std::memory_order_relaxed); }

 private:
  static unsigned thread_shard();
};

}  // namespace vramfs
