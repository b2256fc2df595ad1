// The filesystem as the kernel sees it: a root directory holding the data
// file and the read-only .stats.  One set of operations for every transport:
// each request is decoded (fuse/request.h) and answered here, into the
// buffer the transport sends from.
#pragma once

#include "fuse/mount_state.h"
#include "fuse/request.h"

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <span>
#include <string>

namespace vramfs {

class block_store;
class extent_map;
class page_cache;
class store_channel;
struct stats;

namespace fuse {

constexpr uint64_t root_ino = 1, data_ino = 2, stats_ino = 3;

// The largest READ or WRITE the kernel sends (max_write, max_pages): every
// reply buffer holds this much.
constexpr size_t max_request_bytes = 1 << 20;

// What the daemon asks of the connection in its INIT reply.
struct connection_wish {
  bool io_uring = false;
  bool failover = false;  // the kernel must offer FUSE_NOTIFY_RESEND
};

struct filesystem {
  filesystem(block_store &s, extent_map &e, page_cache &c, mount_state &m, std::string file_name,
             connection_wish wish);

  block_store &store;
  extent_map &extents;
  page_cache &cache;
  mount_state &state;
  stats &counters;  // state.counters
  const std::string data_name;
  const connection_wish wish;
  const uid_t owner_uid;
  const gid_t owner_gid;

  // Why INIT was refused, for the startup report ("" when it was not).
  std::string init_refusal;
  // A server that took over sets this: its first answer records, in the
  // shared state, how long the mount went unanswered since the death.
  std::atomic<bool> first_answer_pending{false};
  // A test's crash loop (fault_injection::takeover_crash_at): the data
  // requests left before this server aborts; 0: never.
  std::atomic<uint64_t> crash_countdown{0};
  // A test's crash in the middle of a resize (fault_injection::
  // resize_crash_at): the resizes left before this server aborts; 0: never.
  std::atomic<uint64_t> resize_crash_countdown{0};
  // Guards the data file's times in state, which utimes may change.
  std::mutex attr_mutex;

  // The .stats text of each open, made at open so that a reader sees one
  // consistent snapshot however it splits its reads.
  std::mutex stats_texts_mutex;
  std::map<uint64_t, std::string> stats_texts;
  uint64_t next_stats_handle = 1;
};

// How a request was answered: error is 0 or a negative errno; on success
// the reply's body is the first `length` bytes of the output buffer.
struct answer {
  int error = 0;
  size_t length = 0;
  bool reply = true;  // false: the kernel expects no reply (FORGET)
};

// Answers one request.  `out` must hold max_request_bytes; it may be the
// very buffer the request's payload lies in (a ring entry's), so every
// operation reads all of its input before it writes output.  Never throws.
answer dispatch(filesystem &fs, store_channel &channel, const request &req,
                std::span<std::byte> out);

// What INIT settled, in one line for the log.
std::string describe(const connection_terms &terms);

}  // namespace fuse
}  // namespace vramfs
