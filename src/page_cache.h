// The page cache: a fixed pool of host lines in front of the block store.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>

namespace vramfs {

class block_store;
class extent_map;
class store_channel;
struct stats;

// Layout and invariants
//
// The file is cut into blocks of block_size bytes; a cache line holds one
// whole block.  Lines are grouped in sets of `ways` lines, and a block can
// only live in set (block % sets): finding a block costs one short scan of
// one set, and requests for blocks in different sets never contend.  Every
// operation on a block happens with its set's mutex held, including the
// store copies it waits for, so one block is never copied in two directions
// at once.  A thread holds at most one set mutex, except the write-back,
// which takes a run of sets in ascending order; so there is no lock cycle.
//
//  - A line that holds a block implies that the block's extent bit is set
//    (the block holds data), and in lazy mode that its chunk is backed.
//  - A dirty line is the only up-to-date copy of its block: it is written
//    back before the line is reused, and a failed write-back keeps it dirty.
//  - A block whose extent bit is clear reads as zeros and is never copied.
//
// Writes are acknowledged once they are in a line.  A write-back thread
// flushes dirty lines in ascending block order, many copies per wait, when
// a quarter of the lines are dirty and once a second, so that a write
// rarely has to wait for a line to be written back first.
class page_cache {
 public:
  static constexpr unsigned ways = 8;

  page_cache(block_store &store, extent_map &extents, stats &counters, uint64_t block_size,
             uint64_t cache_bytes);
  ~page_cache();
  page_cache(const page_cache &) = delete;
  page_cache &operator=(const page_cache &) = delete;

  // Each returns 0 or a negative errno.  The range must lie inside the file.
  int read(store_channel &ch, uint64_t offset, void *dst, size_t len);
  int write(store_channel &ch, uint64_t offset, const void *src, size_t len);
  // The range reads as zeros afterwards; whole blocks stop holding data and,
  // in lazy mode, whole chunks without data are given back to the device.
  int discard(store_channel &ch, uint64_t offset, uint64_t len);
  // fallocate(): in lazy mode, takes the memory of the range now and keeps
  // it until the blocks are discarded; the range still reads as zeros.
  int preallocate(uint64_t offset, uint64_t len);
  // Writes back every line that was dirty when it was called.
  int flush(store_channel &ch);

  uint64_t dirty_lines() const { return dirty_.load(std::memory_order_relaxed); }
  uint64_t line_count() const { return line_count_; }
  uint64_t block_size() const { return block_size_; }

  // The write-back thread, with a channel of its own.
  void start_writeback();
  void stop_writeback();

 private:
  struct line {
    uint64_t block;
    uint64_t last_use = 0;
    bool dirty = false;
    std::byte *data = nullptr;
  };
  struct alignas(64) cache_set {
    std::mutex mutex;
    uint64_t clock = 0;
    line lines[ways];
  };

  uint64_t block_bytes(uint64_t block) const;  // the last block may be short
  cache_set &set_of(uint64_t block) { return sets_[block % set_count_]; }
  line *find(cache_set &set, uint64_t block);
  // A line to load `block` into, written back first if it was dirty.
  int take_line(store_channel &ch, cache_set &set, line **out);
  int write_back(store_channel &ch, cache_set *const *sets, size_t count);
  // Waits for the copies queued on ch; returns submit_err, else the wait's.
  int finish_copies(store_channel &ch, int submit_err);
  void mark_used(cache_set &set, line &l) { l.last_use = ++set.clock; }
  void mark_dirty(line &l);
  int read_block(store_channel &ch, uint64_t block, size_t in_block, std::byte *dst, size_t len);
  int write_block(store_channel &ch, uint64_t block, size_t in_block, const std::byte *src,
                  size_t len);
  void drop_block(uint64_t block);
  void writeback_loop();

  block_store &store_;
  extent_map &extents_;
  stats &stats_;
  const uint64_t block_size_;
  const uint64_t line_count_;
  const uint64_t set_count_;
  std::unique_ptr<cache_set[]> sets_;
  std::byte *memory_ = nullptr;            // all lines, from store_.alloc_host()
  std::byte *zeros_ = nullptr;             // one block of zeros for partial discards
  std::atomic<uint64_t> dirty_{0};
  // Lazy mode: orders backing a chunk and setting a block's bit against
  // checking a chunk empty and giving it back.
  std::mutex lazy_mutex_;

  std::thread writeback_thread_;
  std::unique_ptr<store_channel> writeback_channel_;
  std::mutex writeback_mutex_;
  std::condition_variable writeback_wake_;
  bool writeback_stop_ = false;
};

}  // namespace vramfs
