// Synchronous copies to and from a block store, for the store suites.
#pragma once

#include "store/block_store.h"

namespace vramfs {

inline int copy_in(block_store &s, store_channel &ch, uint64_t off, const void *src,
                   size_t len) {
  int err = s.submit_write(ch, off, src, len);
  return err ? err : s.wait(ch);
}

inline int copy_out(block_store &s, store_channel &ch, uint64_t off, void *dst, size_t len) {
  int err = s.submit_read(ch, off, dst, len);
  return err ? err : s.wait(ch);
}

}  // namespace vramfs
