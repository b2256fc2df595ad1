#include "cache/page_cache.h"

#include "cache/extent_map.h"
#include "common/log.h"
#include "common/monotonic_clock.h"
#include "common/round_up.h"
#include "common/stats.h"
#include "store/block_store.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

namespace vramfs {
namespace {

// Sectors per block at most: the masks are 64 bits.
constexpr uint64_t max_sectors = 64;

// Calls fn(first, count) for each run of set bits in mask.
template <typename Fn>
int for_each_run(uint64_t mask, Fn fn) {
  while (mask) {
    unsigned first = unsigned(__builtin_ctzll(mask));
    uint64_t rest = mask >> first;
    unsigned count = ~rest ? unsigned(__builtin_ctzll(~rest)) : 64 - first;
    if (int err = fn(first, count)) return err;
    mask &= count + first >= 64 ? 0 : ~uint64_t(0) << (first + count);
  }
  return 0;
}

}  // namespace

uint64_t page_cache::line_count_for(uint64_t block_size, uint64_t cache_bytes) {
  return std::max<uint64_t>(cache_bytes / block_size, ways) / ways * ways;
}

page_cache::page_cache(block_store &store, extent_map &extents, stats &counters,
                       uint64_t block_size, uint64_t line_count, memory mem)
    : store_(store),
      extents_(extents),
      stats_(counters),
      block_size_(block_size),
      sector_size_(std::max<uint64_t>(4096, block_size / max_sectors)),
      line_count_(line_count),
      set_count_(line_count / ways),
      locks_(new set_lock[set_count_]) {
  adopt(mem);
}

page_cache::page_cache(block_store &store, extent_map &extents, stats &counters,
                       uint64_t block_size, uint64_t cache_bytes)
    : store_(store),
      extents_(extents),
      stats_(counters),
      block_size_(block_size),
      sector_size_(std::max<uint64_t>(4096, block_size / max_sectors)),
      line_count_(line_count_for(block_size, cache_bytes)),
      set_count_(line_count_ / ways),
      locks_(new set_lock[set_count_]),
      own_sets_(new set_state[set_count_]) {
  own_lines_ = static_cast<std::byte *>(store_.alloc_host(line_count_ * block_size_));
  adopt({own_sets_.get(), own_lines_, true});
}

void page_cache::adopt(memory mem) {
  sets_ = mem.sets;
  lines_ = mem.lines;
  zeros_ = static_cast<std::byte *>(store_.alloc_host(block_size_));
  memset(zeros_, 0, block_size_);
  if (mem.fresh) {
    for (uint64_t s = 0; s < set_count_; ++s) {
      sets_[s].clock = 0;
      for (line_state &l : sets_[s].lines) l = line_state{no_block, 0, 0, 0};
    }
  }
  if (!mem.take_over_later) take_over_lines();
}

void page_cache::take_over_lines() {
  uint64_t dirty = 0;
  for (uint64_t s = 0; s < set_count_; ++s) {
    for (line_state &l : sets_[s].lines) {
      // A predecessor may have died between two of an operation's updates;
      // what it left must still satisfy the invariants.  A line of a block
      // without data belongs to a write that was never acknowledged (its
      // bit is set before the answer): the kernel sends that write again.
      if (l.block != no_block &&
          (l.block >= extents_.blocks() || !extents_.has_data(l.block) || past_end(l.block)))
        l.block = no_block;
      if (l.block == no_block) l.valid = l.dirty = 0;
      l.dirty &= l.valid;
      if (l.dirty) ++dirty;
    }
  }
  dirty_ = dirty;
}

page_cache::~page_cache() {
  stop_writeback();
  store_.free_host(zeros_, block_size_);
  if (own_lines_) store_.free_host(own_lines_, line_count_ * block_size_);
}

uint64_t page_cache::block_bytes(uint64_t block) const {
  // The size is a whole number of blocks but at max_size(), whose last
  // block may be short: that is the only short one.
  uint64_t start = block * block_size_;
  return std::min(block_size_, store_.max_size() - start);
}

bool page_cache::past_end(uint64_t block) const { return block * block_size_ >= store_.size(); }

uint64_t page_cache::full_mask(uint64_t block) const {
  uint64_t sectors = (block_bytes(block) + sector_size_ - 1) / sector_size_;
  return sectors >= 64 ? ~uint64_t(0) : (uint64_t(1) << sectors) - 1;
}

uint64_t page_cache::sector_mask(uint64_t in_block, uint64_t len) const {
  uint64_t first = in_block / sector_size_;
  uint64_t last = (in_block + len - 1) / sector_size_;
  uint64_t upto = last >= 63 ? ~uint64_t(0) : (uint64_t(1) << (last + 1)) - 1;
  return upto & (~uint64_t(0) << first);
}

std::byte *page_cache::data_of(const set_state &set, const line_state &l) const {
  uint64_t index = uint64_t(&set - sets_) * ways + uint64_t(&l - set.lines);
  return lines_ + index * block_size_;
}

page_cache::line_state *page_cache::find(set_state &set, uint64_t block) {
  for (line_state &l : set.lines)
    if (l.block == block) return &l;
  return nullptr;
}

void page_cache::add_dirty(line_state &l, uint64_t mask) {
  bool was_clean = !l.dirty;
  l.dirty |= mask;
  if (!was_clean) return;
  uint64_t dirty = dirty_.fetch_add(1, std::memory_order_relaxed) + 1;
  // Wake the write-back early, under its mutex, so that the wake-up cannot
  // fall between its check and its sleep.
  if (dirty >= line_count_ / 8) {
    std::lock_guard lock(writeback_mutex_);
    if (!writeback_wanted_) {
      writeback_wanted_ = true;
      writeback_wake_.notify_one();
    }
  }
}

int page_cache::finish_copies(store_channel &ch, int submit_err) {
  // Wait even when a submit failed: the copies queued before it may still
  // be writing into a buffer that is reused once the set's lock drops.
  uint64_t start = monotonic_ns();
  int err = store_.wait(ch);
  stats::add(stats_.mine().copy_waits);
  stats::add(stats_.mine().copy_wait_ns, monotonic_ns() - start);
  return submit_err ? submit_err : err;
}

int page_cache::fetch(store_channel &ch, const set_state &set, line_state &l, uint64_t mask) {
  std::byte *data = data_of(set, l);
  uint64_t base = l.block * block_size_, limit = block_bytes(l.block);
  int err = for_each_run(mask, [&](unsigned first, unsigned count) {
    uint64_t from = first * sector_size_;
    uint64_t len = std::min<uint64_t>(count * sector_size_, limit - from);
    return store_.submit_read(ch, base + from, data + from, len);
  });
  err = finish_copies(ch, err);
  if (!err) l.valid |= mask;
  return err;
}

int page_cache::write_back(store_channel &ch, set_state &set) {
  if (!std::any_of(std::begin(set.lines), std::end(set.lines),
                   [](const line_state &l) { return l.dirty != 0; }))
    return 0;
  // Reads that copy from the store without the lock started before this
  // thread took it; no new one can start now.  They take microseconds.
  const std::atomic<uint32_t> &readers = locks_[uint64_t(&set - sets_)].unlocked_readers;
  while (readers.load(std::memory_order_acquire)) std::this_thread::yield();
  // Queue every dirty run of the set's lines, then wait once: the copies
  // overlap, and their fixed cost is paid once per set.
  int err = 0;
  size_t queued = 0;
  for (line_state &l : set.lines) {
    if (!l.dirty || err) continue;
    std::byte *data = data_of(set, l);
    uint64_t base = l.block * block_size_, limit = block_bytes(l.block);
    err = for_each_run(l.dirty, [&](unsigned first, unsigned count) {
      uint64_t from = first * sector_size_;
      uint64_t len = std::min<uint64_t>(count * sector_size_, limit - from);
      ++queued;
      return store_.submit_write(ch, base + from, data + from, len);
    });
  }
  if (!queued) return err;
  err = finish_copies(ch, err);
  if (err) {
    log_err_limited("write-back of %zu cache runs failed: %s; they stay dirty", queued,
                    strerror(-err));
    return err;
  }
  size_t lines = 0;
  for (line_state &l : set.lines)
    if (l.dirty) {
      l.dirty = 0;
      ++lines;
    }
  dirty_.fetch_sub(lines, std::memory_order_relaxed);
  stats::add(stats_.mine().flushes, lines);
  return 0;
}

int page_cache::take_line(store_channel &ch, set_state &set, line_state **out) {
  // An empty line, else the least recently used clean one, else the least
  // recently used dirty one, which must reach the store before reuse.
  line_state *victim = nullptr;
  for (line_state &l : set.lines) {
    if (l.block == no_block) {
      *out = &l;
      return 0;
    }
    bool dirty = l.dirty, victim_dirty = victim && victim->dirty;
    if (!victim || (victim_dirty && !dirty) ||
        (victim_dirty == dirty && l.last_use < victim->last_use))
      victim = &l;
  }
  // Writing back the whole set costs one wait, like writing back the victim
  // alone, and spares the next misses in this set.
  if (victim->dirty)
    if (int err = write_back(ch, set)) return err;
  victim->block = no_block;
  victim->valid = 0;
  *out = victim;
  return 0;
}

int page_cache::read_block(store_channel &ch, uint64_t block, size_t in_block, std::byte *dst,
                           size_t len) {
  set_state &set = sets_[set_index(block)];
  std::unique_lock lock(locks_[set_index(block)].mutex);
  if (store_.failed()) return -EIO;
  if (past_end(block)) return -EINVAL;  // a shrink got here first
  if (line_state *l = find(set, block)) {
    uint64_t missing = sector_mask(in_block, len) & ~l->valid;
    if (missing) {
      // The line holds other sectors of the block (a write); the store has
      // these, and they are clean by definition.
      stats::add(stats_.mine().cache_misses);
      if (int err = fetch(ch, set, *l, missing)) return err;
    } else {
      stats::add(stats_.mine().cache_hits);
    }
    mark_used(set, *l);
    memcpy(dst, data_of(set, *l) + in_block, len);
    return 0;
  }
  if (!extents_.has_data(block)) {
    memset(dst, 0, len);  // a hole: nothing to copy
    stats::add(stats_.mine().cache_hits);
    return 0;
  }
  // Straight from the store into the reply, just the bytes asked for: a
  // swap-in costs one small copy and takes no line that a write needs.
  // Reserved memory is never given back, so the copy needs no lock and
  // other requests of the set do not wait for it; the set's write-backs,
  // the only writers of its blocks in the store, wait for it instead, so
  // that it never reads a sector half written.  In lazy mode a discard
  // could give the chunk back under the copy: the lock stays.
  stats::add(stats_.mine().cache_misses);
  uint64_t at = block * block_size_ + in_block;
  if (store_.lazy()) return finish_copies(ch, store_.submit_read(ch, at, dst, len));
  std::atomic<uint32_t> &readers = locks_[set_index(block)].unlocked_readers;
  readers.fetch_add(1, std::memory_order_acquire);
  lock.unlock();
  int err = finish_copies(ch, store_.submit_read(ch, at, dst, len));
  readers.fetch_sub(1, std::memory_order_release);
  return err;
}

int page_cache::write_block(store_channel &ch, uint64_t block, size_t in_block,
                            const std::byte *src, size_t len) {
  set_state &set = sets_[set_index(block)];
  std::lock_guard lock(locks_[set_index(block)].mutex);
  if (store_.failed()) return -EIO;
  if (past_end(block)) return -EINVAL;  // a shrink got here first
  bool has_data = extents_.has_data(block);
  line_state *l = find(set, block);
  if (l) {
    stats::add(stats_.mine().cache_hits);
  } else {
    stats::add(stats_.mine().cache_misses);
    if (int err = take_line(ch, set, &l)) return err;
    if (!has_data) {
      // The rest of a new block reads as zeros, and its first write-back
      // must say so to the store, which may hold anything there.
      memset(data_of(set, *l), 0, block_bytes(block));
      l->valid = full_mask(block);
      l->block = block;
      add_dirty(*l, l->valid);
    } else {
      l->block = block;
    }
  }
  uint64_t mask = sector_mask(in_block, len);
  // Sectors written in part keep the rest of their bytes: fetch them first.
  uint64_t partial = 0;
  if (in_block % sector_size_) partial |= sector_mask(in_block, 1);
  if ((in_block + len) % sector_size_ && in_block + len < block_bytes(block))
    partial |= sector_mask(in_block + len - 1, 1);
  if (uint64_t need = partial & ~l->valid)
    if (int err = fetch(ch, set, *l, need)) return err;
  memcpy(data_of(set, *l) + in_block, src, len);
  l->valid |= mask;
  add_dirty(*l, mask);
  mark_used(set, *l);
  if (!has_data) {
    if (store_.lazy()) {
      // Back the chunk before acknowledging, so that running out of VRAM
      // is this write's error and not a lost write-back later.
      std::lock_guard lazy(lazy_mutex_);
      if (int err = store_.ensure_backed(block * block_size_, block_bytes(block))) {
        // Nothing of it may stay: the write is refused.
        dirty_.fetch_sub(1, std::memory_order_relaxed);
        *l = line_state{no_block, 0, 0, 0};
        return err;
      }
      extents_.set(block);
    } else {
      extents_.set(block);
    }
  }
  return 0;
}

void page_cache::drop_block(uint64_t block) {
  set_state &set = sets_[set_index(block)];
  std::lock_guard lock(locks_[set_index(block)].mutex);
  if (line_state *l = find(set, block)) {
    if (l->dirty) dirty_.fetch_sub(1, std::memory_order_relaxed);
    *l = line_state{no_block, 0, 0, 0};
  }
  extents_.clear(block);
}

// Splits [offset, offset + len) at block boundaries.
template <typename Fn>
static int for_each_block(uint64_t offset, uint64_t len, uint64_t block_size, Fn fn) {
  uint64_t done = 0;
  while (done < len) {
    uint64_t pos = offset + done;
    uint64_t block = pos / block_size;
    uint64_t in_block = pos % block_size;
    uint64_t piece = std::min(len - done, block_size - in_block);
    if (int err = fn(block, in_block, done, piece)) return err;
    done += piece;
  }
  return 0;
}

namespace {

// Tells the store, for one request, how long the request is (see
// store_channel::request_bytes).
class request_scope {
 public:
  request_scope(store_channel &ch, uint64_t len) : ch_(ch) { ch_.request_bytes = len; }
  ~request_scope() { ch_.request_bytes = 0; }
  request_scope(const request_scope &) = delete;
  request_scope &operator=(const request_scope &) = delete;

 private:
  store_channel &ch_;
};

}  // namespace

int page_cache::read(store_channel &ch, uint64_t offset, void *dst, size_t len) {
  if (offset > store_.size() || len > store_.size() - offset) return -EINVAL;
  request_scope request(ch, len);
  auto *out = static_cast<std::byte *>(dst);
  return for_each_block(offset, len, block_size_,
                        [&](uint64_t block, uint64_t in_block, uint64_t done, uint64_t piece) {
                          return read_block(ch, block, in_block, out + done, piece);
                        });
}

int page_cache::write(store_channel &ch, uint64_t offset, const void *src, size_t len) {
  if (offset > store_.size() || len > store_.size() - offset) return -EINVAL;
  request_scope request(ch, len);
  auto *in = static_cast<const std::byte *>(src);
  return for_each_block(offset, len, block_size_,
                        [&](uint64_t block, uint64_t in_block, uint64_t done, uint64_t piece) {
                          return write_block(ch, block, in_block, in + done, piece);
                        });
}

int page_cache::discard(store_channel &ch, uint64_t offset, uint64_t len) {
  if (offset > store_.size() || len > store_.size() - offset) return -EINVAL;
  int err = for_each_block(
      offset, len, block_size_, [&](uint64_t block, uint64_t in_block, uint64_t, uint64_t piece) {
        if (piece == block_bytes(block)) {
          drop_block(block);
          return 0;
        }
        // Part of a block: zero that part, unless the block is a hole.
        if (!extents_.has_data(block)) return 0;
        return write_block(ch, block, in_block, zeros_, piece);
      });
  if (err || !store_.lazy() || !len) return err;

  // Give back every chunk touched by the range that no longer holds data.
  uint64_t chunk = store_.chunk_size();
  uint64_t blocks_per_chunk = std::max<uint64_t>(chunk / block_size_, 1);
  for (uint64_t c = offset / chunk; c * chunk < offset + len; ++c) {
    uint64_t first = c * chunk / block_size_;
    std::lock_guard lazy(lazy_mutex_);
    if (extents_.range_unused(first, blocks_per_chunk))
      store_.release(c * chunk, std::min(chunk, store_.size() - c * chunk));
  }
  return 0;
}

int page_cache::preallocate(uint64_t offset, uint64_t len) {
  if (offset > store_.size() || len > store_.size() - offset) return -EINVAL;
  if (!store_.lazy()) return 0;  // reserved mode holds all its memory
  std::lock_guard lazy(lazy_mutex_);
  // Again under the mutex a shrink gives memory back under: never back a
  // chunk past the end it just set.
  if (offset + len > store_.size()) return -EINVAL;
  if (int err = store_.ensure_backed(offset, len)) return err;
  // Mark the blocks, so that a discard elsewhere in their chunks does not
  // give the memory back that this call promised.
  for (uint64_t b = offset / block_size_; b * block_size_ < offset + len; ++b)
    extents_.set_preallocated(b);
  return 0;
}

int page_cache::reserve_for_grow(uint64_t size) {
  if (size > store_.max_size()) return -EFBIG;
  if (store_.lazy()) return 0;
  // Ordered against resizes: a shrink gives back all past its new end,
  // and nothing taken here may land after that.
  std::lock_guard resizing(resize_mutex_);
  uint64_t old = store_.size();
  if (size <= old) return 0;
  if (int err = store_.ensure_backed(old, size - old)) {
    release_past(old);
    return err;
  }
  return 0;
}

int page_cache::resize(uint64_t new_size, const std::function<void(uint64_t)> &record) {
  std::lock_guard resizing(resize_mutex_);
  uint64_t old = store_.size();
  if (new_size == old) {
    // Memory a prepared grow took and no grow used goes back.
    if (!store_.lazy()) release_past(old);
    return 0;
  }
  if (new_size > store_.max_size()) return -EFBIG;
  if (new_size % block_size_ && new_size != store_.max_size()) return -EINVAL;
  if (new_size > old) {
    // Reserved mode: all of the new part's memory now, or none of it.  In
    // lazy mode the writes take it.  The chunk the old end lies in is held
    // already (or, lazy, taken by its first write).
    if (!store_.lazy()) {
      if (int err = store_.ensure_backed(old, new_size - old)) {
        release_past(old);
        return err;
      }
    }
    record(new_size);
    store_.set_size(new_size);
    // A prepared grow larger than this one gives back the rest.
    if (!store_.lazy()) release_past(new_size);
    return 0;
  }
  // Lower first: from now on no request takes a block past the new end
  // (each looks under its set's mutex); then each set lets go of them.
  record(new_size);
  store_.set_size(new_size);
  drop_blocks(new_size / block_size_, (old + block_size_ - 1) / block_size_);
  release_past(new_size);
  return 0;
}

void page_cache::settle_size(uint64_t size) {
  store_.set_size(std::min(size, store_.max_size()));
  drop_blocks((store_.size() + block_size_ - 1) / block_size_, extents_.blocks());
  release_past(store_.size());
}

void page_cache::drop_blocks(uint64_t first, uint64_t end) {
  uint64_t blocks = std::min(end, extents_.blocks());
  if (first >= blocks) return;
  for (uint64_t s = 0; s < set_count_; ++s) {
    std::lock_guard lock(locks_[s].mutex);
    // A read miss that began before the size fell may still copy without
    // the mutex: the memory must outlive it.
    const std::atomic<uint32_t> &readers = locks_[s].unlocked_readers;
    while (readers.load(std::memory_order_acquire)) std::this_thread::yield();
    for (line_state &l : sets_[s].lines)
      if (l.block != no_block && l.block >= first && l.block < blocks) {
        if (l.dirty) dirty_.fetch_sub(1, std::memory_order_relaxed);
        l = line_state{no_block, 0, 0, 0};
      }
    // This set's blocks past the end: first, then every set_count_-th.
    uint64_t b = first + (s + set_count_ - first % set_count_) % set_count_;
    for (; b < blocks; b += set_count_) extents_.clear(b);
  }
}

void page_cache::release_past(uint64_t size) {
  uint64_t chunk = store_.chunk_size();
  uint64_t keep = round_up(size, chunk);
  std::lock_guard lazy(lazy_mutex_);
  // The chunk the end lies in holds data below it, unless (lazy mode) its
  // blocks below the end were discarded: then it goes too.
  if (store_.lazy() && keep > size) {
    uint64_t start = keep - chunk;
    if (extents_.range_unused(start / block_size_, (size - start + block_size_ - 1) / block_size_))
      keep = start;
  }
  if (keep < store_.max_size()) store_.release(keep, store_.max_size() - keep);
}

int page_cache::flush(store_channel &ch) {
  int result = 0;
  for (uint64_t s = 0; s < set_count_; ++s) {
    std::lock_guard lock(locks_[s].mutex);
    if (int err = write_back(ch, sets_[s])) result = err;
  }
  return result;
}

void page_cache::start_writeback() {
  writeback_channel_ = store_.open_background_channel();
  writeback_stop_ = false;
  writeback_thread_ = std::thread([this] { writeback_loop(); });
}

void page_cache::stop_writeback() {
  if (!writeback_thread_.joinable()) return;
  {
    std::lock_guard lock(writeback_mutex_);
    writeback_stop_ = true;
  }
  writeback_wake_.notify_one();
  writeback_thread_.join();
}

void page_cache::writeback_loop() {
  bool failing = false;
  for (;;) {
    {
      std::unique_lock lock(writeback_mutex_);
      // Sleep until enough lines are dirty (add_dirty wakes us), once a
      // second anyway, and a second after a failure, not in a tight loop.
      auto wanted = [this] { return writeback_stop_ || writeback_wanted_; };
      bool sleep = failing || !wanted();
      if (before_writeback_sleep) before_writeback_sleep();
      // The predicate looks again once asleep: a wake-up that came since
      // is not lost (add_dirty sets the flag under this mutex).
      if (sleep) writeback_wake_.wait_for(lock, writeback_period, wanted);
      if (writeback_stop_) return;
      writeback_wanted_ = false;
    }
    if (!dirty_lines()) continue;
    // One set at a time, skipping sets that requests hold now: they are
    // cleaned on the next pass, or by a write that needs a line there.
    failing = false;
    for (uint64_t s = 0; s < set_count_ && !writeback_stop_; ++s) {
      std::unique_lock lock(locks_[s].mutex, std::try_to_lock);
      if (!lock) continue;
      if (write_back(*writeback_channel_, sets_[s])) failing = true;  // logged; stays dirty
    }
  }
}

}  // namespace vramfs
