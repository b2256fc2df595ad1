// A vramfs filesystem of 4 MiB in RAM (host store, lazy), with its cache
// and one channel, and a reply buffer as large as any request: what the
// request decoder's unit tests and its fuzz target answer requests with.
#pragma once

#include "cache/extent_map.h"
#include "cache/page_cache.h"
#include "fuse/mount_state.h"
#include "fuse/operations.h"
#include "fuse/request.h"
#include "store/host_store.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace vramfs {

struct small_filesystem {
  static constexpr uint64_t block = 64 * 1024;
  static constexpr uint64_t file_size = 4 * 1024 * 1024;

  explicit small_filesystem(bool wish_uring = false)
      : store(file_size, true),
        extents(file_size / block),
        cache(store, extents, state.counters, block, 16 * block),
        fs(store, extents, cache, state, "swapfile", fuse::connection_wish{wish_uring}),
        ch(store.open_channel()),
        out(fuse::max_request_bytes) {}

  host_store store;
  extent_map extents;
  mount_state state;
  page_cache cache;
  fuse::filesystem fs;
  std::unique_ptr<store_channel> ch;
  std::vector<std::byte> out;
};

}  // namespace vramfs
