// The filesystem as the kernel sees it: a root directory holding the data
// file and the read-only .stats, served through libfuse's low-level API.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>

struct fuse_lowlevel_ops;

namespace vramfs {

class block_store;
class extent_map;
class page_cache;
struct stats;

constexpr uint64_t root_ino = 1, data_ino = 2, stats_ino = 3;

struct filesystem {
  filesystem(block_store &s, extent_map &e, page_cache &c, stats &st, std::string file_name);

  block_store &store;
  extent_map &extents;
  page_cache &cache;
  stats &counters;
  const std::string data_name;
  const uid_t owner_uid;
  const gid_t owner_gid;
  const timespec mounted_at;

  // Opens of the data file not yet released: while non-zero (a loop device
  // holds it), the daemon refuses to stop.
  std::atomic<uint64_t> data_opens{0};
  // Set once the kernel's INIT request is answered: the mount is usable.
  std::atomic<bool> initialized{false};

  // What chmod, chown and utimes may change on the data file.
  std::mutex attr_mutex;
  mode_t data_mode = 0600;
  uid_t data_uid;
  gid_t data_gid;
  timespec data_mtime, data_ctime;
};

// The callbacks; fuse_session_new() gets the filesystem as userdata.
const fuse_lowlevel_ops &filesystem_operations();

// The connection settings the init callback negotiated, for the log.
std::string describe_connection();

// The largest read or write the kernel sends: libfuse's buffer holds 256
// pages, and the mount passes max_read to match.
constexpr size_t max_request_bytes = 1 << 20;

}  // namespace vramfs
