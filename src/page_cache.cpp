#include "page_cache.h"

#include "block_store.h"
#include "extent_map.h"
#include "log.h"
#include "stats.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

namespace vramfs {
namespace {

constexpr uint64_t no_block = UINT64_MAX;
// How many sets one write-back pass locks and waits for at once.
constexpr size_t writeback_batch = 16;

int64_t monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

}  // namespace

page_cache::page_cache(block_store &store, extent_map &extents, stats &counters,
                       uint64_t block_size, uint64_t cache_bytes)
    : store_(store),
      extents_(extents),
      stats_(counters),
      block_size_(block_size),
      line_count_(std::max<uint64_t>(cache_bytes / block_size, ways) / ways * ways),
      set_count_(line_count_ / ways),
      sets_(new cache_set[set_count_]) {
  memory_ = static_cast<std::byte *>(store_.alloc_host(line_count_ * block_size_));
  try {
    zeros_ = static_cast<std::byte *>(store_.alloc_host(block_size_));
  } catch (...) {
    store_.free_host(memory_, line_count_ * block_size_);
    throw;
  }
  memset(zeros_, 0, block_size_);
  for (uint64_t s = 0; s < set_count_; ++s)
    for (unsigned w = 0; w < ways; ++w) {
      line &l = sets_[s].lines[w];
      l.block = no_block;
      l.data = memory_ + (s * ways + w) * block_size_;
    }
}

page_cache::~page_cache() {
  stop_writeback();
  store_.free_host(zeros_, block_size_);
  store_.free_host(memory_, line_count_ * block_size_);
}

uint64_t page_cache::block_bytes(uint64_t block) const {
  uint64_t start = block * block_size_;
  return std::min(block_size_, store_.size() - start);
}

page_cache::line *page_cache::find(cache_set &set, uint64_t block) {
  for (line &l : set.lines)
    if (l.block == block) return &l;
  return nullptr;
}

void page_cache::mark_dirty(line &l) {
  if (l.dirty) return;
  l.dirty = true;
  uint64_t dirty = dirty_.fetch_add(1, std::memory_order_relaxed) + 1;
  if (dirty == line_count_ / 4) writeback_wake_.notify_one();
}

int page_cache::take_line(store_channel &ch, cache_set &set, line **out) {
  // An empty line, else the least recently used clean one, else the least
  // recently used dirty one, which must reach the store before reuse.
  line *victim = nullptr;
  for (line &l : set.lines) {
    if (l.block == no_block) {
      *out = &l;
      return 0;
    }
    if (!victim || (victim->dirty && !l.dirty) ||
        (victim->dirty == l.dirty && l.last_use < victim->last_use))
      victim = &l;
  }
  if (victim->dirty) {
    cache_set *one = &set;
    if (int err = write_back(ch, &one, 1)) return err;
  }
  victim->block = no_block;
  *out = victim;
  return 0;
}

int page_cache::write_back(store_channel &ch, cache_set *const *sets, size_t count) {
  // Queue every dirty line of the locked sets, then wait once: the copies
  // overlap, and their fixed cost is paid once per batch.
  int err = 0;
  size_t queued = 0;
  for (size_t i = 0; i < count && !err; ++i)
    for (line &l : sets[i]->lines) {
      if (!l.dirty) continue;
      err = store_.submit_write(ch, l.block * block_size_, l.data, block_bytes(l.block));
      if (err) break;
      ++queued;
    }
  if (!queued) return err;
  err = finish_copies(ch, err);
  if (err) {
    log_err_limited("write-back of %zu cache lines failed: %s; they stay dirty", queued,
                    strerror(-err));
    return err;
  }
  for (size_t i = 0; i < count; ++i)
    for (line &l : sets[i]->lines)
      if (l.dirty) {
        l.dirty = false;
        dirty_.fetch_sub(1, std::memory_order_relaxed);
      }
  stats::add(stats_.flushes, queued);
  return 0;
}

int page_cache::finish_copies(store_channel &ch, int submit_err) {
  // Wait even when a submit failed: the copies queued before it may still
  // be writing into a buffer that is reused once the set's lock drops.
  int64_t start = monotonic_ns();
  int err = store_.wait(ch);
  stats::add(stats_.copy_waits);
  stats::add(stats_.copy_wait_ns, uint64_t(monotonic_ns() - start));
  return submit_err ? submit_err : err;
}

int page_cache::read_block(store_channel &ch, uint64_t block, size_t in_block, std::byte *dst,
                           size_t len) {
  cache_set &set = set_of(block);
  std::lock_guard lock(set.mutex);
  if (line *l = find(set, block)) {
    mark_used(set, *l);
    memcpy(dst, l->data + in_block, len);
    stats::add(stats_.cache_hits);
    return 0;
  }
  if (!extents_.has_data(block)) {
    memset(dst, 0, len);  // a hole: nothing to copy
    stats::add(stats_.cache_hits);
    return 0;
  }
  stats::add(stats_.cache_misses);
  uint64_t offset = block * block_size_;
  if (len == block_bytes(block)) {
    // A whole block goes straight to the caller, without taking a line
    // that a streaming read would only push out again.
    return finish_copies(ch, store_.submit_read(ch, offset, dst, len));
  }
  line *l;
  if (int err = take_line(ch, set, &l)) return err;
  int err = finish_copies(ch, store_.submit_read(ch, offset, l->data, block_bytes(block)));
  if (err) return err;  // the line stays empty
  l->block = block;
  mark_used(set, *l);
  memcpy(dst, l->data + in_block, len);
  return 0;
}

int page_cache::write_block(store_channel &ch, uint64_t block, size_t in_block,
                            const std::byte *src, size_t len) {
  cache_set &set = set_of(block);
  std::lock_guard lock(set.mutex);
  line *l = find(set, block);
  if (l) {
    stats::add(stats_.cache_hits);
  } else {
    stats::add(stats_.cache_misses);
    if (int err = take_line(ch, set, &l)) return err;
    bool whole = len == block_bytes(block);
    if (extents_.has_data(block)) {
      if (!whole) {  // keep the rest of the block: read, then modify
        int err = finish_copies(
            ch, store_.submit_read(ch, block * block_size_, l->data, block_bytes(block)));
        if (err) return err;
      }
    } else {
      if (!whole) memset(l->data, 0, block_bytes(block));
      if (store_.lazy()) {
        // Back the chunk before acknowledging, so that running out of VRAM
        // is this write's error and not a lost write-back later.
        std::lock_guard lazy(lazy_mutex_);
        if (int err = store_.ensure_backed(block * block_size_, block_bytes(block))) return err;
        extents_.set(block);
      } else {
        extents_.set(block);
      }
    }
    l->block = block;
  }
  memcpy(l->data + in_block, src, len);
  mark_used(set, *l);
  mark_dirty(*l);
  return 0;
}

void page_cache::drop_block(uint64_t block) {
  cache_set &set = set_of(block);
  std::lock_guard lock(set.mutex);
  if (line *l = find(set, block)) {
    if (l->dirty) dirty_.fetch_sub(1, std::memory_order_relaxed);
    l->dirty = false;
    l->block = no_block;
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

int page_cache::read(store_channel &ch, uint64_t offset, void *dst, size_t len) {
  if (offset > store_.size() || len > store_.size() - offset) return -EINVAL;
  auto *out = static_cast<std::byte *>(dst);
  return for_each_block(offset, len, block_size_,
                        [&](uint64_t block, uint64_t in_block, uint64_t done, uint64_t piece) {
                          return read_block(ch, block, in_block, out + done, piece);
                        });
}

int page_cache::write(store_channel &ch, uint64_t offset, const void *src, size_t len) {
  if (offset > store_.size() || len > store_.size() - offset) return -EINVAL;
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
  if (int err = store_.ensure_backed(offset, len)) return err;
  // Mark the blocks, so that a discard elsewhere in their chunks does not
  // give the memory back that this call promised.
  for (uint64_t b = offset / block_size_; b * block_size_ < offset + len; ++b)
    extents_.set_preallocated(b);
  return 0;
}

int page_cache::flush(store_channel &ch) {
  int result = 0;
  for (uint64_t first = 0; first < set_count_; first += writeback_batch) {
    size_t count = std::min<uint64_t>(writeback_batch, set_count_ - first);
    cache_set *batch[writeback_batch];
    std::unique_lock<std::mutex> locks[writeback_batch];
    for (size_t i = 0; i < count; ++i) {
      batch[i] = &sets_[first + i];
      locks[i] = std::unique_lock(batch[i]->mutex);  // ascending: see the class comment
    }
    if (int err = write_back(ch, batch, count)) result = err;
  }
  return result;
}

void page_cache::start_writeback() {
  writeback_channel_ = store_.open_channel();
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
  std::unique_lock lock(writeback_mutex_);
  bool failed = false;
  while (!writeback_stop_) {
    // Sleep while the cache is mostly clean; keep going while writes keep
    // more than a quarter of it dirty, unless the store is failing.
    if (failed || dirty_lines() < line_count_ / 4)
      writeback_wake_.wait_for(lock, std::chrono::seconds(1));
    if (writeback_stop_) break;
    if (!dirty_lines()) continue;
    lock.unlock();
    failed = flush(*writeback_channel_) != 0;  // logged; the lines stay dirty
    lock.lock();
  }
}

}  // namespace vramfs
