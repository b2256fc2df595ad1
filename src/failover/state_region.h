// The state of a mount that outlives its server (-o failover), in one
// memfd: the mount_state (counters, INIT's terms, opens), the extent map,
// and the page cache's sets and lines, dirty ones included.  The first
// server creates it and hands it to the keeper, which keeps it mapped, and
// so resident and locked; every later server inherits the keeper's mapping
// and takes it over as the dead one left it.
#pragma once

#include "cache/page_cache.h"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace vramfs {

struct mount_state;

namespace failover {

class state_region {
 public:
  // What fixes the layout; a successor checks that it finds the same.
  struct shape {
    uint64_t file_size = 0;  // the largest size (max_size=): laid out for it
    uint64_t block_size = 0;
    uint64_t line_count = 0;
    bool operator==(const shape &) const = default;
  };

  // A new region in a new memfd, mapped here.  nullptr, *error on failure.
  static std::unique_ptr<state_region> create(const shape &s, std::string *error);
  // Maps the region of memfd `fd` (the keeper does, once the first server
  // sent it).  The fd stays the caller's.
  static std::unique_ptr<state_region> map(int fd, std::string *error);
  ~state_region();
  state_region(const state_region &) = delete;
  state_region &operator=(const state_region &) = delete;

  int fd() const { return fd_; }  // -1 unless this one created it
  const shape &layout() const;
  mount_state &state();
  std::atomic<uint64_t> *extent_words();
  page_cache::set_state *sets();
  std::byte *lines();
  size_t bytes() const { return bytes_; }

 private:
  state_region(std::byte *base, size_t bytes, int fd) : base_(base), bytes_(bytes), fd_(fd) {}
  std::byte *base_;
  size_t bytes_;
  int fd_;
};

}  // namespace failover
}  // namespace vramfs
