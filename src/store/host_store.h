// The host store: the file's data in RAM.  For machines without a GPU and
// for tests; it behaves like the cuda store (reserved or lazy, chunked).
#pragma once

#include "store/block_store.h"

#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

namespace vramfs {

class host_store final : public block_store {
 public:
  // The memory comes from anonymous mappings, which the daemon's
  // mlockall(MCL_FUTURE) populates and locks as they are made.
  host_store(uint64_t size, bool lazy);
  // Reserved, over memory of the caller's (a memfd mapping shared with the
  // keeper, -o failover), which stays the caller's.
  host_store(uint64_t size, std::byte *memory);
  ~host_store() override;

  const char *backend() const override { return "host"; }
  std::string device() const override { return "ram"; }
  uint64_t chunk_size() const override { return chunk_bytes; }
  uint64_t held_bytes() const override { return held_.load(std::memory_order_relaxed); }
  bool failed() const override { return failed_.load(std::memory_order_relaxed); }
  std::string copy_path() const override { return "memcpy"; }

  std::unique_ptr<store_channel> open_channel() override;
  int submit_read(store_channel &ch, uint64_t offset, void *dst, size_t len) override;
  int submit_write(store_channel &ch, uint64_t offset, const void *src, size_t len) override;
  int wait(store_channel &ch) override;
  int ensure_backed(uint64_t offset, uint64_t len) override;
  void release(uint64_t offset, uint64_t len) override;
  void *alloc_host(size_t bytes) override;
  void free_host(void *ptr, size_t bytes) override;
  int pin_host(void *, size_t) override { return 0; }  // memcpy needs no pinning
  void unpin_host(void *) override {}

  static constexpr uint64_t chunk_bytes = 2 << 20;

  // RAM this backend may use: MemTotal for percentages, MemAvailable as the
  // most a reserved mount may lock.
  static uint64_t total_ram();
  static uint64_t available_ram();

 private:
  // Where offset lives; nullptr when lazy and not backed.
  std::byte *address(uint64_t offset) const;
  int check_copy(uint64_t offset, size_t len);

  std::byte *reserved_ = nullptr;      // reserved mode: the whole size
  bool reserved_is_ours_ = true;
  std::vector<std::byte *> chunks_;    // lazy mode: one mapping per chunk
  std::mutex chunks_mutex_;
  std::atomic<uint64_t> held_{0};
  std::atomic<bool> failed_{false};
};

}  // namespace vramfs
