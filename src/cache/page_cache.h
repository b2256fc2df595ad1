// The page cache: a fixed pool of host lines in front of the block store.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
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
// The file is cut into blocks of block_size bytes, and blocks into at most
// 64 sectors (4K, or block_size / 64 for blocks over 256K).  A cache line
// holds one block, but only the sectors its `valid` mask names; `dirty`
// names the sectors newer than the store.  Lines are grouped in sets of
// `ways` lines, and a block can only live in set (block % sets): finding a
// block costs one short scan of one set, and requests for blocks in
// different sets never contend.  Every operation on a block happens with
// its set's mutex held, including the store copies it waits for, so one
// block is never copied in two directions at once, and a discard never
// frees memory that a copy is using.  The one exception: in reserved mode,
// where memory is never given back, a read miss that takes no line copies
// from the store after dropping the lock, and the set's write-backs wait
// for such reads to end before they write to the store.  A thread holds one set mutex at a
// time, so there is no lock cycle; the write-back thread takes them with
// try_lock, so it never makes a request wait behind it for long.
//
//  - dirty is a subset of valid; a line's block implies the block's extent
//    bit is set (it holds data) or is about to be, and in lazy mode that its
//    chunk is backed.
//  - Dirty sectors are the only up-to-date copy of their data: they are
//    written back before the line is reused, and a failed write-back keeps
//    them dirty.  Sectors that are valid but clean equal the store's.
//  - A line of a block without data holds the whole block (zeros where
//    nothing was written), all of it dirty, so that its first write-back
//    replaces whatever the store held there.
//  - A block whose extent bit is clear reads as zeros and is never copied.
//
// A 4K swap-in that misses is one 4K copy from the store straight into the
// reply, taking no line; a 4K swap-out is a copy into a line, acknowledged
// at once.  A write-back thread copies dirty sectors to the store in the
// background, a set at a time, so that writes rarely wait for a line.
//
// The file's size may change (resize): blocks at or past size() are never
// cached, hold no extent bit, and are refused to requests that find them
// under their set's mutex.  A shrink lowers the size first, then clears
// every set of the blocks past it (waiting for a set's unlocked readers),
// and gives their memory back last; a grow takes the memory first and
// raises the size last.
//
// The sets' state (set_state) is plain data that may live in memory shared
// with a successor process (a restarted server): nothing in it points into
// this process, and every prefix of an operation's updates leaves it
// consistent for the request that the kernel resends (docs/design.md).
class page_cache {
 public:
  static constexpr unsigned ways = 8;
  static constexpr uint64_t no_block = UINT64_MAX;

  struct line_state {
    uint64_t block;
    uint64_t last_use;
    uint64_t valid;  // sectors the line holds
    uint64_t dirty;  // sectors newer than the store
  };
  struct set_state {
    uint64_t clock;
    line_state lines[ways];
  };

  // How many lines a cache of cache_bytes holds: whole sets, at least one.
  static uint64_t line_count_for(uint64_t block_size, uint64_t cache_bytes);
  // Where the cache keeps its state: set_count() set_states and
  // line_count() * block_size bytes of line data (pinned for DMA where the
  // store copies with DMA).  `fresh` memory is initialised; otherwise it is
  // a predecessor's, taken over as it is.
  struct memory {
    set_state *sets;
    std::byte *lines;
    bool fresh;
    // A standby server builds its cache while its predecessor still
    // writes to the shared state: it takes the lines over only once that
    // one is dead (take_over_lines).
    bool take_over_later = false;
  };

  page_cache(block_store &store, extent_map &extents, stats &counters, uint64_t block_size,
             uint64_t line_count, memory mem);
  // The same with memory of its own: the sets in the heap, the lines from
  // the store's alloc_host().
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
  // Reserved mode: takes the memory a grow to `size` will need now,
  // without changing the size, so that resize(size) finds it held and
  // only moves the end (common/prepare_grow.h says why).  The next
  // resize, whatever its size, or a successor's settle_size(), gives back
  // what no grow used.  -EFBIG past max_size(), -ENOSPC as resize
  // (keeping nothing it took); lazy mode takes nothing, since its grows
  // take nothing either.
  int reserve_for_grow(uint64_t size);
  // Writes back every sector that was dirty when it was called.
  int flush(store_channel &ch);
  // Changes the file's size (truncate), within the store's max_size().
  // Growing takes the memory of the new part first (reserved mode; -ENOSPC
  // when there is not that much, and nothing changed); shrinking drops the
  // data past the new end, which reads as zeros if the file grows again,
  // and gives back every chunk wholly past it.  -EINVAL for a size that is
  // not a whole number of blocks (max_size() always is one), -EFBIG past
  // max_size().  `record` is called with the new size before it takes
  // effect, so that a successor finds it (mount_state::file_size): a
  // successor's settle_size() finishes or undoes what a death cut short.
  int resize(uint64_t new_size, const std::function<void(uint64_t)> &record);
  // After a takeover: makes the cache, the extent map and the store's
  // memory agree with `size`, the size the dead server recorded (its
  // resize may have been cut short): nothing cached or held past it.
  // Before any thread serves.
  void settle_size(uint64_t size);
  // Takes the shared lines over as a dead predecessor left them: drops
  // what belongs to writes it never acknowledged, counts the dirty lines.
  // The constructor does it, unless told to leave it for later.
  void take_over_lines();

  uint64_t dirty_lines() const { return dirty_.load(std::memory_order_relaxed); }
  uint64_t line_count() const { return line_count_; }
  uint64_t set_count() const { return set_count_; }
  uint64_t block_size() const { return block_size_; }
  uint64_t sector_size() const { return sector_size_; }

  // The write-back thread, with a channel of its own.
  void start_writeback();
  void stop_writeback();
  // For tests: called by the write-back thread with its mutex held, after
  // it looked whether there is work and before it sleeps.
  void (*before_writeback_sleep)() = nullptr;
  // How long the write-back thread sleeps when nobody wakes it.  Tests
  // lengthen it, so that a lost wake-up shows as a wait no load explains.
  std::chrono::milliseconds writeback_period{std::chrono::seconds(1)};

 private:
  struct alignas(64) set_lock {
    std::mutex mutex;
    // Read misses copying from the store without the mutex (reserved mode).
    std::atomic<uint32_t> unlocked_readers{0};
  };

  // The constructors' common part: takes the memory over, or sets it up.
  void adopt(memory mem);
  uint64_t block_bytes(uint64_t block) const;  // the last block may be short
  uint64_t full_mask(uint64_t block) const;    // every sector of the block
  uint64_t sector_mask(uint64_t in_block, uint64_t len) const;
  std::byte *data_of(const set_state &set, const line_state &l) const;
  uint64_t set_index(uint64_t block) const { return block % set_count_; }
  line_state *find(set_state &set, uint64_t block);
  // A line to load `block` into, written back first if it was dirty.
  int take_line(store_channel &ch, set_state &set, line_state **out);
  // Copies the `mask` sectors of l's block between the line and the store.
  int fetch(store_channel &ch, const set_state &set, line_state &l, uint64_t mask);
  int write_back(store_channel &ch, set_state &set);
  void mark_used(set_state &set, line_state &l) { l.last_use = ++set.clock; }
  void add_dirty(line_state &l, uint64_t mask);
  int finish_copies(store_channel &ch, int submit_err);
  int read_block(store_channel &ch, uint64_t block, size_t in_block, std::byte *dst, size_t len);
  int write_block(store_channel &ch, uint64_t block, size_t in_block, const std::byte *src,
                  size_t len);
  void drop_block(uint64_t block);
  // Drops every line and extent bit of blocks [first, end), a set at a
  // time, under its mutex, after the set's unlocked readers.
  void drop_blocks(uint64_t first, uint64_t end);
  // Gives back the chunks wholly past `size`, and in lazy mode the one it
  // ends in when that holds no data.
  void release_past(uint64_t size);
  bool past_end(uint64_t block) const;
  void writeback_loop();

  block_store &store_;
  extent_map &extents_;
  stats &stats_;
  const uint64_t block_size_;
  const uint64_t sector_size_;
  const uint64_t line_count_;
  const uint64_t set_count_;
  set_state *sets_ = nullptr;
  std::byte *lines_ = nullptr;
  std::unique_ptr<set_lock[]> locks_;
  // Memory allocated by the second constructor, freed with the cache.
  std::unique_ptr<set_state[]> own_sets_;
  std::byte *own_lines_ = nullptr;
  std::byte *zeros_ = nullptr;  // one block of zeros for partial discards
  std::atomic<uint64_t> dirty_{0};
  // Lazy mode: orders backing a chunk and setting a block's bit against
  // checking a chunk empty and giving it back.
  std::mutex lazy_mutex_;
  // One resize at a time (the kernel sends one, but a resent one may meet
  // its own replay).  Taken before any set mutex.
  std::mutex resize_mutex_;

  std::thread writeback_thread_;
  std::unique_ptr<store_channel> writeback_channel_;
  std::mutex writeback_mutex_;
  std::condition_variable writeback_wake_;
  bool writeback_wanted_ = false;  // under writeback_mutex_
  // Read without the mutex by the write-back loop between sets.
  std::atomic<bool> writeback_stop_{false};
};

}  // namespace vramfs
