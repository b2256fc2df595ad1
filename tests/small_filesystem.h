// A vramfs filesystem of 4 MiB in RAM (host store, lazy), with its cache
// and one channel, and a reply buffer as large as any request: what the
// request decoder's unit tests, the resize suite and the fuzz target
// answer requests with.
#pragma once

#include "cache/extent_map.h"
#include "cache/page_cache.h"
#include "fuse/mount_state.h"
#include "fuse/operations.h"
#include "fuse/request.h"
#include "store/host_store.h"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace vramfs {

struct small_filesystem {
  static constexpr uint64_t block = 64 * 1024;
  static constexpr uint64_t file_size = 4 * 1024 * 1024;

  explicit small_filesystem(bool wish_uring = false)
      : small_filesystem(file_size, true, file_size, wish_uring) {}
  // SIZE now, growing up to MAX_SIZE by truncate; LAZY: memory taken as
  // written (else all of SIZE at once).
  small_filesystem(uint64_t size, bool lazy, uint64_t max_size, bool wish_uring = false)
      : store(size, lazy, max_size),
        extents(max_size / block),
        cache(store, extents, state.counters, block, 16 * block),
        fs(store, extents, cache, state, "swapfile", fuse::connection_wish{wish_uring}),
        ch(store.open_channel()),
        out(fuse::max_request_bytes) {
    state.file_size = size;
  }

  // Builds the bytes /dev/fuse would deliver (the header, ARG, then
  // PAYLOAD) and answers them as the daemon would; the answer's body is
  // in out.
  fuse::answer send(uint32_t opcode, uint64_t nodeid, const void *arg, size_t arg_len,
                    const void *payload = nullptr, size_t payload_len = 0) {
    std::vector<std::byte> bytes(sizeof(fuse::in_header) + arg_len + payload_len);
    fuse::in_header h{};
    h.len = uint32_t(bytes.size());
    h.opcode = opcode;
    h.unique = 2;
    h.nodeid = nodeid;
    h.uid = uid;
    memcpy(bytes.data(), &h, sizeof h);
    if (arg_len) memcpy(bytes.data() + sizeof h, arg, arg_len);
    if (payload_len) memcpy(bytes.data() + sizeof h + arg_len, payload, payload_len);
    uint64_t unique;
    std::string why;
    auto req = fuse::split_device_request(bytes, &unique, &why);
    if (!req) {  // the test built a bad request: its own bug
      fprintf(stderr, "small_filesystem::send: %s\n", why.c_str());
      abort();
    }
    return fuse::dispatch(fs, *ch, *req, out);
  }

  uint32_t uid = 0;  // the caller's, in each request's header
  host_store store;
  extent_map extents;
  mount_state state;
  page_cache cache;
  fuse::filesystem fs;
  std::unique_ptr<store_channel> ch;
  std::vector<std::byte> out;
};

}  // namespace vramfs
