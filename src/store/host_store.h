// The host store: the file's data in RAM.  For machines without a GPU and
// for tests; it behaves like the cuda store (reserved or lazy, chunked,
// resizable, its memory kept by the keeper with -o failover).
#pragma once

#include "store/block_store.h"

#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

namespace vramfs {

// Memory comes in chunks, each its own mapping, so that any chunk can be
// given back: anonymous mappings, which the daemon's mlockall(MCL_FUTURE)
// populates and locks as they are made; or, with keeping (-o failover), a
// memfd per chunk, handed to the keeper before anything is stored in it (the
// keeper maps it too, so that it stays resident and locked while no server
// runs).  Reserved mode maps every chunk below size() at once; lazy mode as
// blocks are first written.
//
// Threading: ensure_backed(), release() and the chunk adoption of a standby
// serialize on chunks_mutex_; copies read the chunk table without it (the
// cache orders a chunk's mapping before any copy into it, and its release
// after the last).
class host_store final : public block_store {
 public:
  // size bytes now, max_size at most (0: the same).
  host_store(uint64_t size, bool lazy, uint64_t max_size = 0);
  // With -o failover: chunks kept by the keeper, or on a takeover mapped
  // from the descriptors it holds (keeping->chunks).  Throws std::bad_alloc
  // when the memory cannot be had.
  host_store(uint64_t size, uint64_t max_size, bool lazy, const store_keeping *keeping);
  ~host_store() override;

  const char *backend() const override { return "host"; }
  std::string device() const override { return "ram"; }
  uint64_t chunk_size() const override { return chunk_; }
  uint64_t held_bytes() const override { return held_.load(std::memory_order_relaxed); }
  bool failed() const override { return false; }  // RAM is not lost as a GPU is
  std::string copy_path() const override { return "memcpy"; }

  std::unique_ptr<store_channel> open_channel() override;
  int submit_read(store_channel &ch, uint64_t offset, void *dst, size_t len) override;
  int submit_write(store_channel &ch, uint64_t offset, const void *src, size_t len) override;
  int wait(store_channel &ch) override;
  int ensure_backed(uint64_t offset, uint64_t len) override;
  void release(uint64_t offset, uint64_t len) override;
  int adopt_chunk(uint64_t index, int fd) override;
  void forget_chunk(uint64_t index) override;
  void *alloc_host(size_t bytes) override;
  void free_host(void *ptr, size_t bytes) override;
  int pin_host(void *, size_t) override { return 0; }  // memcpy needs no pinning
  void unpin_host(void *) override {}

  // The chunk without failover: the finest step, as lazy VRAM's.
  static constexpr uint64_t chunk_bytes = 2 << 20;

  // RAM this backend may use: MemTotal for percentages, MemAvailable as the
  // most a reserved mount may lock.
  static uint64_t total_ram();
  static uint64_t available_ram();

 private:
  // Where offset lives; nullptr when its chunk is not backed.
  std::byte *address(uint64_t offset) const;
  int check_copy(uint64_t offset, size_t len);
  uint64_t chunk_count() const { return chunks_.size(); }
  // The last chunk ends the range: it may be shorter.
  uint64_t bytes_of(uint64_t index) const;
  // Under chunks_mutex_: maps chunk index (a new memfd handed to the keeper
  // with keeping); -ENOSPC when the memory cannot be had.
  int map_chunk(uint64_t index);
  void unmap_chunk(uint64_t index, bool tell_keeper);

  uint64_t chunk_ = chunk_bytes;
  std::vector<std::byte *> chunks_;  // one mapping per chunk, nullptr: not backed
  std::mutex chunks_mutex_;
  std::atomic<uint64_t> held_{0};
  // -o failover: chunk memfds go to the keeper (keep), and it is told of
  // those given back (drop).
  std::function<int(uint64_t, int, uint64_t)> keep_;
  std::function<void(uint64_t)> drop_;
};

}  // namespace vramfs
