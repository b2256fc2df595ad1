// A store that has failed for good: every copy answers EIO at once.  The
// keeper serves with it when no server can be started on the real one
// (failover/keeper.h), so that nothing waits on a mount that lost its data.
#pragma once

#include "store/block_store.h"

#include <sys/mman.h>

#include <cerrno>
#include <new>

namespace vramfs {

class failed_store final : public block_store {
 public:
  failed_store(uint64_t size, uint64_t max_size) : block_store(size, false, max_size) {}

  const char *backend() const override { return "failed"; }
  std::string device() const override { return "none (no server could be started)"; }
  uint64_t chunk_size() const override { return 2 << 20; }
  uint64_t held_bytes() const override { return 0; }
  bool failed() const override { return true; }
  std::string copy_path() const override { return "none"; }

  std::unique_ptr<store_channel> open_channel() override {
    return std::make_unique<store_channel>();
  }
  int submit_read(store_channel &, uint64_t, void *, size_t) override { return -EIO; }
  int submit_write(store_channel &, uint64_t, const void *, size_t) override { return -EIO; }
  int wait(store_channel &) override { return -EIO; }
  int ensure_backed(uint64_t, uint64_t) override { return -EIO; }
  void release(uint64_t, uint64_t) override {}
  void *alloc_host(size_t bytes) override {
    void *p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    return p;
  }
  void free_host(void *ptr, size_t bytes) override {
    if (ptr) munmap(ptr, bytes);
  }
  int pin_host(void *, size_t) override { return 0; }
  void unpin_host(void *) override {}
};

}  // namespace vramfs
