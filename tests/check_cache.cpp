// Unit tests: the page cache over the host store.
#include "cache/extent_map.h"
#include "cache/page_cache.h"
#include "common/fault_injection.h"
#include "common/stats.h"
#include "store/host_store.h"
#include "store/store_decorator.h"
#include "faulty_host_store.h"

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <deque>
#include <condition_variable>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

// Last: check.h defines macros (fail) that clash with the C++ library.
#include "check_main.h"

using namespace vramfs;

namespace {

constexpr uint64_t block = 4096;

// A file of `blocks` blocks behind a cache of `lines` lines (one set of
// eight when lines is 8, so every block competes for the same lines), over
// a Store (a host store, or a decorator of one).
template <class Store>
struct basic_fixture {
  explicit basic_fixture(uint64_t blocks, uint64_t lines = 8, bool lazy = false)
      : store(blocks * block, lazy),
        extents(blocks),
        cache(store, extents, counters, block, lines * block),
        ch(store.open_channel()) {}

  // What the store itself holds, bypassing the cache.
  std::vector<uint8_t> stored(uint64_t offset, size_t len) {
    std::vector<uint8_t> out(len);
    ck_assert_int_eq(store.submit_read(*ch, offset, out.data(), len), 0);
    ck_assert_int_eq(store.wait(*ch), 0);
    return out;
  }
  std::vector<uint8_t> read(uint64_t offset, size_t len) {
    std::vector<uint8_t> out(len, 0xEE);
    ck_assert_int_eq(cache.read(*ch, offset, out.data(), len), 0);
    return out;
  }
  // Block 0 written, then pushed out of the one set (8 lines) and flushed:
  // the store holds it and the cache does not.
  void store_block_0(const std::vector<uint8_t> &data) {
    ck_assert_int_eq(cache.write(*ch, 0, data.data(), block), 0);
    for (uint64_t b = 1; b <= 8; ++b)
      ck_assert_int_eq(cache.write(*ch, b * block, data.data(), block), 0);
    ck_assert_int_eq(cache.flush(*ch), 0);
  }

  Store store;
  extent_map extents;
  stats counters;
  page_cache cache;
  std::unique_ptr<store_channel> ch;
};
using fixture = basic_fixture<host_store>;
// With VRAMFS_INJECT_FAULT's store faults, as the daemon builds it.
using faulty_fixture = basic_fixture<faulty_host_store>;

std::vector<uint8_t> pattern(size_t len, uint8_t seed) {
  std::vector<uint8_t> v(len);
  for (size_t i = 0; i < len; ++i) v[i] = uint8_t(seed * 31 + i * 7 + (i >> 8));
  return v;
}


// A host store inside a decorator: the tests' decorators override only
// what they change.
class forwarding_store : public store_decorator {
 public:
  forwarding_store(uint64_t size, bool lazy)
      : store_decorator(std::make_unique<host_store>(size, lazy)) {}
};

// A store that keeps count of the copies queued since the last wait, over a
// host store, and fails the copy it is told to (after queueing it, as the
// cuda store does when CUDA refuses one piece of a copy).
class watching_store final : public forwarding_store {
 public:
  watching_store(uint64_t size, bool lazy) : forwarding_store(size, lazy) {}

  unsigned queued_since_wait = 0;
  unsigned fail_submit = 0;  // the Nth submit from now fails; 0: none
  uint64_t last_request_bytes = ~uint64_t(0);  // the channel's, at the last submit

  int submit_read(store_channel &ch, uint64_t offset, void *dst, size_t len) override {
    last_request_bytes = ch.request_bytes;
    return counted(inner_->submit_read(ch, offset, dst, len));
  }
  int submit_write(store_channel &ch, uint64_t offset, const void *src, size_t len) override {
    last_request_bytes = ch.request_bytes;
    return counted(inner_->submit_write(ch, offset, src, len));
  }
  int wait(store_channel &ch) override {
    queued_since_wait = 0;
    return inner_->wait(ch);
  }

 private:
  int counted(int err) {
    ++queued_since_wait;
    if (fail_submit && --fail_submit == 0) return -EIO;
    return err;
  }
};


// A store whose copies complete later, on threads of their own, as a GPU's
// do: a copy's bytes move some microseconds after its submit, a few bytes
// at a time, several copies at once, and wait() returns once the channel's
// copies have.  The cache must never read or reuse a buffer before its
// wait, nor let a read from the store overlap a write-back of the same
// sectors (windows the host store, whose copies finish at submit, never
// opens).
class late_store final : public forwarding_store {
 public:
  late_store(uint64_t size, bool lazy) : forwarding_store(size, lazy) {
    for (auto &w : workers_) w = std::thread([this] { complete_copies(); });
  }
  ~late_store() override {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto &w : workers_) w.join();
  }

  std::unique_ptr<store_channel> open_channel() override {
    return std::make_unique<late_channel>();
  }
  std::unique_ptr<store_channel> open_background_channel() override { return open_channel(); }
  int submit_read(store_channel &ch, uint64_t offset, void *dst, size_t len) override {
    return queue(ch, {true, offset, dst, nullptr, len});
  }
  int submit_write(store_channel &ch, uint64_t offset, const void *src, size_t len) override {
    return queue(ch, {false, offset, nullptr, src, len});
  }
  int wait(store_channel &ch) override {
    auto &c = static_cast<late_channel &>(ch);
    while (c.pending.load(std::memory_order_acquire)) std::this_thread::yield();
    return 0;
  }

 private:
  struct late_channel final : store_channel {
    std::atomic<unsigned> pending{0};
  };
  struct copy {
    bool read;
    uint64_t offset;
    void *dst;
    const void *src;
    size_t len;
    late_channel *ch = nullptr;
  };
  int queue(store_channel &ch, copy c) {
    c.ch = &static_cast<late_channel &>(ch);
    c.ch->pending.fetch_add(1, std::memory_order_relaxed);
    {
      std::lock_guard lock(mutex_);
      copies_.push_back(c);
    }
    cv_.notify_one();
    return 0;
  }
  void complete_copies() {
    auto ch = inner_->open_channel();
    std::mt19937 rng(1);
    std::unique_lock lock(mutex_);
    for (;;) {
      cv_.wait(lock, [this] { return stop_ || !copies_.empty(); });
      if (copies_.empty()) return;
      copy c = copies_.front();
      copies_.pop_front();
      lock.unlock();
      // The copy lands a little later, as DMA does, and not at once: in
      // pieces that cut across the tests' 64-byte records.
      for (size_t at = 0; at < c.len; at += 40) {
        size_t piece = std::min<size_t>(40, c.len - at);
        int err = c.read ? inner_->submit_read(*ch, c.offset + at, static_cast<char *>(c.dst) + at, piece)
                         : inner_->submit_write(*ch, c.offset + at, static_cast<const char *>(c.src) + at, piece);
        if (!err) inner_->wait(*ch);
        if (rng() % 4 == 0) std::this_thread::sleep_for(std::chrono::microseconds(20));
      }
      c.ch->pending.fetch_sub(1, std::memory_order_release);
      lock.lock();
    }
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<copy> copies_;
  bool stop_ = false;
  std::thread workers_[3];
};

// 64 KiB blocks of sixteen 4 KiB sectors, 8 lines in one set, over a
// Store of 16 blocks.
template <class Store>
struct sector_fixture {
  static constexpr uint64_t block_bytes = 64 * 1024;
  sector_fixture()
      : store(16 * block_bytes, false),
        extents(16),
        cache(store, extents, counters, block_bytes, 8 * block_bytes),
        ch(store.open_channel()),
        whole(pattern(block_bytes, 5)) {}

  // Block 0 stored, pushed out of the set, then its sector 1 written again:
  // its new line lacks two runs (sector 0, sectors 2-15), which a read of
  // the block fetches from the store.
  void leave_block0_holding_sector1() {
    ck_assert_int_eq(cache.write(*ch, 0, whole.data(), block_bytes), 0);
    for (uint64_t b = 1; b <= 8; ++b)
      ck_assert_int_eq(cache.write(*ch, b * block_bytes, whole.data(), block_bytes), 0);
    ck_assert_int_eq(cache.flush(*ch), 0);
    ck_assert_int_eq(cache.write(*ch, 4096, whole.data() + 4096, 4096), 0);
  }

  Store store;
  extent_map extents;
  stats counters;
  page_cache cache;
  std::unique_ptr<store_channel> ch;
  std::vector<uint8_t> whole;
};

}  // namespace

START_TEST(holes_read_as_zeros) {
  fixture f(16);
  auto got = f.read(1000, 3 * block);
  for (uint8_t b : got) ck_assert_uint_eq(b, 0);
  ck_assert_uint_eq(f.extents.blocks_with_data(), 0);
  ck_assert_uint_eq(f.store.held_bytes(), 16 * block);  // reserved, not lazy
}
END_TEST

START_TEST(eviction_under_pressure_keeps_every_block) {
  // 64 blocks through 8 lines: every line is reused many times, and each
  // reuse of a dirty line must write it back first.
  fixture f(64);
  for (uint64_t b = 0; b < 64; ++b) {
    auto data = pattern(block, uint8_t(b));
    ck_assert_int_eq(f.cache.write(*f.ch, b * block, data.data(), block), 0);
  }
  ck_assert_uint_le(f.cache.dirty_lines(), 8);
  ck_assert_uint_ge(f.counters.total(&stats::shard::flushes), 56);
  for (uint64_t b = 0; b < 64; ++b) ck_assert(f.read(b * block, block) == pattern(block, uint8_t(b)));
  ck_assert_uint_eq(f.extents.blocks_with_data(), 64);
}
END_TEST

START_TEST(writes_are_write_back) {
  fixture f(16);
  auto data = pattern(block, 3);
  ck_assert_int_eq(f.cache.write(*f.ch, 2 * block, data.data(), block), 0);
  ck_assert_uint_eq(f.cache.dirty_lines(), 1);
  // Acknowledged from the cache: the store has not seen it yet.
  ck_assert(f.stored(2 * block, block) != data);
  ck_assert(f.read(2 * block, block) == data);
  ck_assert_int_eq(f.cache.flush(*f.ch), 0);  // what fsync does
  ck_assert_uint_eq(f.cache.dirty_lines(), 0);
  ck_assert(f.stored(2 * block, block) == data);
}
END_TEST

START_TEST(partial_writes_keep_the_rest_of_the_block) {
  fixture f(64);
  auto full = pattern(block, 9);
  ck_assert_int_eq(f.cache.write(*f.ch, 0, full.data(), block), 0);
  // Push block 0 out of the one set, so the next write must read it back.
  for (uint64_t b = 1; b <= 8; ++b) {
    auto other = pattern(block, uint8_t(b));
    ck_assert_int_eq(f.cache.write(*f.ch, b * block, other.data(), block), 0);
  }
  const char patch[] = "unaligned";
  ck_assert_int_eq(f.cache.write(*f.ch, 1001, patch, sizeof patch), 0);
  memcpy(&full[1001], patch, sizeof patch);
  ck_assert(f.read(0, block) == full);
  // A partial write to a hole: the rest of the block reads as zeros.
  ck_assert_int_eq(f.cache.write(*f.ch, 20 * block + 10, patch, sizeof patch), 0);
  auto got = f.read(20 * block, block);
  for (size_t i = 0; i < block; ++i)
    ck_assert_uint_eq(got[i], i >= 10 && i < 10 + sizeof patch ? uint8_t(patch[i - 10]) : 0);
}
END_TEST

START_TEST(requests_spanning_blocks) {
  fixture f(32, 16);
  auto data = pattern(5 * block + 123, 4);
  ck_assert_int_eq(f.cache.write(*f.ch, block - 7, data.data(), data.size()), 0);
  ck_assert(f.read(block - 7, data.size()) == data);
  ck_assert_int_eq(f.cache.read(*f.ch, 31 * block, data.data(), 2 * block), -EINVAL);
}
END_TEST

START_TEST(discard_makes_holes) {
  fixture f(16);
  auto data = pattern(4 * block, 5);
  ck_assert_int_eq(f.cache.write(*f.ch, 0, data.data(), data.size()), 0);
  ck_assert_uint_eq(f.extents.blocks_with_data(), 4);
  // Whole blocks 1 and 2 become holes; half of block 3 is zeroed.
  ck_assert_int_eq(f.cache.discard(*f.ch, block, 2 * block + block / 2), 0);
  ck_assert_uint_eq(f.extents.blocks_with_data(), 2);
  auto got = f.read(0, 4 * block);
  for (size_t i = 0; i < got.size(); ++i)
    ck_assert_uint_eq(got[i], i < block || i >= 3 * block + block / 2 ? data[i] : 0);
  ck_assert_int_eq(f.cache.flush(*f.ch), 0);
  ck_assert(f.read(0, 4 * block) == got);
}
END_TEST

START_TEST(lazy_discard_gives_memory_back) {
  // Two chunks of the host store; blocks of 4K.
  uint64_t per_chunk = host_store::chunk_bytes / block;
  fixture f(2 * per_chunk, 8, true);
  ck_assert_uint_eq(f.store.held_bytes(), 0);
  auto data = pattern(block, 1);
  ck_assert_int_eq(f.cache.write(*f.ch, 0, data.data(), block), 0);
  ck_assert_int_eq(f.cache.write(*f.ch, per_chunk * block, data.data(), block), 0);
  ck_assert_uint_eq(f.store.held_bytes(), 2 * host_store::chunk_bytes);
  ck_assert_int_eq(f.cache.discard(*f.ch, 0, block), 0);
  ck_assert_uint_eq(f.store.held_bytes(), host_store::chunk_bytes);
  ck_assert(f.read(per_chunk * block, block) == data);
  ck_assert_int_eq(f.cache.flush(*f.ch), 0);
  ck_assert(f.read(per_chunk * block, block) == data);
}
END_TEST

template <class Store>
void race_readers_writers_and_evictions(int rounds) {
  // 64 blocks through one set of 8 lines, with the write-back thread and a
  // discarder running beside: lines are evicted, fetched and written back
  // all the time.  Writers each own a 64-byte record in every block and
  // write it whole with one value repeated; readers must never see a record
  // torn between two writes (or half zeroed by a discard), and every writer
  // must read back its last value or, after a discard, zeros.
  basic_fixture<Store> f(64, 8);
  f.cache.start_writeback();
  constexpr int writers = 4, readers = 3;
  std::atomic<bool> bad{false}, stop{false};
  std::vector<std::thread> threads;
  for (int w = 0; w < writers; ++w)
    threads.emplace_back([&, w] {
      auto ch = f.store.open_channel();
      uint64_t rec[8];
      for (uint64_t r = 1; r <= uint64_t(rounds); ++r) {
        uint64_t at = (r * 7 + uint64_t(w) * 13) % 64 * block + uint64_t(w) * 64;
        for (auto &x : rec) x = r * 100 + uint64_t(w);
        if (f.cache.write(*ch, at, rec, sizeof rec)) bad = true;
        // Its own record, or zeros where the discarder got there first.
        uint64_t back[8], zeros[8] = {};
        if (f.cache.read(*ch, at, back, sizeof back) ||
            (memcmp(back, rec, sizeof rec) && memcmp(back, zeros, sizeof zeros)))
          bad = true;
      }
    });
  for (int r = 0; r < readers; ++r)
    threads.emplace_back([&, r] {
      auto ch = f.store.open_channel();
      for (int i = 0; i < rounds; ++i) {
        uint64_t all[writers * 8];
        uint64_t at = uint64_t(i * 11 + r) % 64 * block;
        if (f.cache.read(*ch, at, all, sizeof all)) bad = true;
        for (int w = 0; w < writers; ++w)
          for (int k = 1; k < 8; ++k)
            if (all[w * 8 + k] != all[w * 8]) bad = true;
      }
    });
  threads.emplace_back([&] {
    // Discards whole blocks far from the writers' records' sectors: a
    // record then reads as all zeros, which is not torn.
    auto ch = f.store.open_channel();
    for (int i = 0; !stop; ++i)
      if (f.cache.discard(*ch, uint64_t(i * 5) % 64 * block, block)) bad = true;
  });
  for (size_t t = 0; t + 1 < threads.size(); ++t) threads[t].join();
  stop = true;
  threads.back().join();
  f.cache.stop_writeback();
  ck_assert(!bad);
  ck_assert_uint_gt(f.counters.total(&stats::shard::flushes), 100);    // evictions wrote back
  ck_assert_uint_gt(f.counters.total(&stats::shard::cache_misses), 100);  // and fetched
}

// _i: 0 over the host store (copies done at submit), 1 over a store whose
// copies land later, on another thread, as DMA does.
START_TEST(concurrent_readers_writers_and_evictions) {
  if (_i == 0) race_readers_writers_and_evictions<host_store>(4000);
  else race_readers_writers_and_evictions<late_store>(3000);
}
END_TEST

START_TEST(a_small_write_to_a_stored_block_copies_nothing) {
  // A 4K swap-out into a block that the store holds: the line takes just
  // that sector, with no read-modify-write of the block; a 4K swap-in that
  // misses copies once, straight into the reply.
  fixture f(64);
  auto data = pattern(block, 4);
  f.store_block_0(data);
  uint64_t waits = f.counters.total(&stats::shard::copy_waits);
  auto page = pattern(4096, 9);
  ck_assert_int_eq(f.cache.write(*f.ch, 0, page.data(), 4096), 0);
  ck_assert_uint_eq(f.counters.total(&stats::shard::copy_waits), waits);
  ck_assert(f.read(0, 4096) == page);  // the line's sector
  ck_assert_uint_eq(f.counters.total(&stats::shard::copy_waits), waits);
  ck_assert(f.read(block, 100) == std::vector<uint8_t>(data.begin(), data.begin() + 100));
  ck_assert_uint_eq(f.counters.total(&stats::shard::copy_waits), waits + 1);  // one copy, 100 bytes
}
END_TEST

START_TEST(a_line_fetches_the_sectors_it_lacks) {
  constexpr uint64_t big = 64 * 1024;  // 16 sectors of 4K
  host_store store(64 * big, false);
  extent_map extents(64);
  stats counters;
  page_cache cache(store, extents, counters, big, 8 * big);
  auto ch = store.open_channel();
  ck_assert_uint_eq(cache.sector_size(), 4096);
  auto whole = pattern(big, 3);
  ck_assert_int_eq(cache.write(*ch, 0, whole.data(), big), 0);
  ck_assert_int_eq(cache.flush(*ch), 0);
  for (uint64_t b = 1; b <= 8; ++b) ck_assert_int_eq(cache.write(*ch, b * big, whole.data(), big), 0);
  // Block 0 is in the store only.  A 4K write takes sector 5 into a line;
  // an unaligned one needs the rest of sectors 7 and 8 first.
  auto page = pattern(4096, 8);
  ck_assert_int_eq(cache.write(*ch, 5 * 4096, page.data(), 4096), 0);
  memcpy(&whole[5 * 4096], page.data(), 4096);
  const char patch[] = "across a sector edge";
  ck_assert_int_eq(cache.write(*ch, 8 * 4096 - 7, patch, sizeof patch), 0);
  memcpy(&whole[8 * 4096 - 7], patch, sizeof patch);
  std::vector<uint8_t> got(big);
  ck_assert_int_eq(cache.read(*ch, 0, got.data(), big), 0);
  ck_assert(got == whole);
  ck_assert_int_eq(cache.flush(*ch), 0);
  std::vector<uint8_t> stored(big);
  ck_assert_int_eq(store.submit_read(*ch, 0, stored.data(), big), 0);
  ck_assert(stored == whole);
}
END_TEST

START_TEST(discard_racing_writes_in_lazy_mode) {
  // A writer keeps writing whole blocks of one chunk while another thread
  // keeps discarding the chunk.  Every block must end up either all data or
  // all zeros, no write may fail, and no write-back may find its chunk gone.
  uint64_t per_chunk = host_store::chunk_bytes / block;
  fixture f(per_chunk, 8, true);
  std::atomic<bool> stop{false}, bad{false};
  std::thread discarder([&] {
    auto ch = f.store.open_channel();
    while (!stop)
      if (f.cache.discard(*ch, 0, host_store::chunk_bytes)) bad = true;
  });
  std::thread flusher([&] {
    auto ch = f.store.open_channel();
    while (!stop)
      if (f.cache.flush(*ch)) bad = true;
  });
  auto data = pattern(block, 7);
  for (int i = 0; i < 20000; ++i) {
    uint64_t b = uint64_t(i * 7) % per_chunk;
    if (f.cache.write(*f.ch, b * block, data.data(), block)) bad = true;
  }
  stop = true;
  discarder.join();
  flusher.join();
  ck_assert(!bad);
  ck_assert_int_eq(f.cache.flush(*f.ch), 0);
  auto zeros = std::vector<uint8_t>(block, 0);
  for (uint64_t b = 0; b < per_chunk; ++b) {
    auto got = f.read(b * block, block);
    ck_assert(got == data || got == zeros);
    ck_assert(f.extents.has_data(b) == (got == data));
  }
  ck_assert_uint_eq(f.store.held_bytes(),
                    f.extents.blocks_with_data() ? host_store::chunk_bytes : 0);
}
END_TEST

START_TEST(failed_write_back_keeps_the_data) {
  faulty_fixture f(16);
  auto data = pattern(block, 8);
  ck_assert_int_eq(f.cache.write(*f.ch, 0, data.data(), block), 0);
  ck_assert(!fault_injection::configure("copy:1"));
  ck_assert_int_eq(f.cache.flush(*f.ch), -EIO);
  ck_assert_uint_eq(f.cache.dirty_lines(), 1);  // still the only copy
  ck_assert_int_eq(f.cache.flush(*f.ch), 0);
  ck_assert(f.stored(0, block) == data);
  ck_assert(!fault_injection::configure(""));
}
END_TEST

START_TEST(failed_fetch_is_an_error_not_zeros) {
  // A 4K swap-in that misses, and a line that lacks the sectors asked for:
  // a failed copy must be an error, never zeros or stale bytes.
  faulty_fixture f(64);
  auto data = pattern(block, 2);
  f.store_block_0(data);
  ck_assert(!fault_injection::configure("copy:1"));
  std::vector<uint8_t> got(100);
  ck_assert_int_eq(f.cache.read(*f.ch, 10, got.data(), got.size()), -EIO);
  ck_assert(!fault_injection::configure(""));
  ck_assert(f.read(0, block) == data);

  sector_fixture<faulty_host_store> s;
  s.leave_block0_holding_sector1();
  ck_assert(!fault_injection::configure("copy:1"));
  ck_assert_int_eq(s.cache.read(*s.ch, 0, got.data(), got.size()), -EIO);  // sector 0 must come from the store
  ck_assert(!fault_injection::configure(""));
}
END_TEST

START_TEST(a_failed_submit_still_waits_for_the_copies_before_it) {
  // A fetch or write-back queues one copy per run of sectors.  When a later
  // piece fails to queue, the earlier ones may still be writing into the
  // line, which another request reuses once the set's lock drops: the cache
  // must wait for them before it answers.
  sector_fixture<watching_store> s;
  s.leave_block0_holding_sector1();
  s.store.fail_submit = 2;  // the second run of the fetch
  std::vector<uint8_t> got(s.block_bytes);
  ck_assert_int_eq(s.cache.read(*s.ch, 0, got.data(), got.size()), -EIO);
  ck_assert_uint_eq(s.store.queued_since_wait, 0);

  // Write-back: two dirty runs in one line (sectors 0-1, with sector 1
  // written above, and sector 3); the second fails to queue.
  ck_assert_int_eq(s.cache.write(*s.ch, 0, s.whole.data(), 4096), 0);
  ck_assert_int_eq(s.cache.write(*s.ch, 3 * 4096, s.whole.data() + 3 * 4096, 4096), 0);
  s.store.fail_submit = 2;
  ck_assert_int_eq(s.cache.flush(*s.ch), -EIO);
  ck_assert_uint_eq(s.store.queued_since_wait, 0);
  ck_assert_int_eq(s.cache.flush(*s.ch), 0);  // still dirty, written now
  ck_assert_int_eq(s.cache.read(*s.ch, 0, got.data(), got.size()), 0);
  ck_assert(got == s.whole);
}
END_TEST

START_TEST(the_store_learns_each_requests_length) {
  // The cuda store sends a copy to its GPU copy engine only when the
  // request it serves is small too: the cache says how long that is while
  // the request's copies are queued, and 0 outside any request.
  sector_fixture<watching_store> s;
  const uint64_t block = s.block_bytes;
  for (uint64_t b = 0; b <= 8; ++b)
    ck_assert_int_eq(s.cache.write(*s.ch, b * block, s.whole.data(), block), 0);
  ck_assert_int_eq(s.cache.flush(*s.ch), 0);
  ck_assert_uint_eq(s.store.last_request_bytes, 0);  // a flush serves no request
  std::vector<uint8_t> got(2 * block);
  ck_assert_int_eq(s.cache.read(*s.ch, 100, got.data(), 100), 0);  // block 0 was pushed out
  ck_assert_uint_eq(s.store.last_request_bytes, 100);
  ck_assert_uint_eq(s.ch->request_bytes, 0);
  ck_assert_int_eq(s.cache.read(*s.ch, 4096, got.data(), 2 * block - 8192), 0);
  ck_assert_uint_eq(s.store.last_request_bytes, 2 * block - 8192);
  ck_assert(std::equal(got.begin(), got.begin() + block - 4096, s.whole.begin() + 4096));
  ck_assert_uint_eq(s.ch->request_bytes, 0);
}
END_TEST

START_TEST(a_stalled_store_fails_instead_of_hanging) {
  faulty_fixture f(16);
  f.store.set_copy_timeout(std::chrono::milliseconds(300));
  auto data = pattern(block, 2);
  ck_assert_int_eq(f.cache.write(*f.ch, 0, data.data(), block), 0);
  ck_assert(!fault_injection::configure("stall:1"));
  auto start = std::chrono::steady_clock::now();
  ck_assert_int_eq(f.cache.flush(*f.ch), -EIO);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ck_assert(seconds >= 0.3 && seconds < 5);
  ck_assert(f.store.failed());
  std::vector<uint8_t> got(block);
  ck_assert_int_eq(f.cache.read(*f.ch, 0, got.data(), block), -EIO);  // at once, from now on
  ck_assert_int_eq(f.cache.write(*f.ch, 0, data.data(), block), -EIO);
  ck_assert(!fault_injection::configure(""));
}
END_TEST

START_TEST(writeback_wakes_up_between_its_check_and_its_sleep) {
  // A writer crosses the wake-up threshold exactly while the write-back
  // thread has decided to sleep but is not asleep yet: the hook starts it
  // and gives it 100 ms, under the thread's mutex.  A wake-up that does not
  // take that mutex is lost there, and the thread sleeps its whole period.
  static std::atomic<int> hook_calls{0};
  static std::atomic<bool> wrote{false};
  static fixture *current;
  static std::chrono::steady_clock::time_point start;
  static std::thread writer;
  fixture f(64, 64);
  current = &f;
  f.cache.before_writeback_sleep = [] {
    if (hook_calls++ != 1) return;  // the second pass: the thread is idle
    // Unwoken, the thread now sleeps a minute: far more than any load on
    // the machine running the test could delay a thread that was woken.
    // (The thread itself reads the period, after this hook.)
    current->cache.writeback_period = std::chrono::minutes(1);
    start = std::chrono::steady_clock::now();
    writer = std::thread([] {
      auto ch = current->store.open_channel();
      auto data = pattern(block, 1);
      for (uint64_t b = 0; b < 16; ++b)  // a quarter of the lines
        current->cache.write(*ch, b * block, data.data(), block);
      wrote = true;
    });
    for (int i = 0; i < 100 && !wrote; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  };
  f.cache.writeback_period = std::chrono::milliseconds(10);  // to the second pass soon
  f.cache.start_writeback();
  while (!wrote) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  writer.join();
  // Woken, it writes back what is dirty then (lines dirtied during its pass
  // below the threshold wait for the next period): fewer than the 16 the
  // writer left.  Nothing else cleans a line here.
  for (int i = 0; i < 3000 && f.cache.dirty_lines() == 16; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  f.cache.stop_writeback();
  ck_assert_msg(f.cache.dirty_lines() < 16,
                "%llu lines still dirty after %.2f s", (unsigned long long)f.cache.dirty_lines(),
                seconds);
}
END_TEST

START_TEST(writeback_thread_cleans_the_cache) {
  fixture f(64, 32);
  f.cache.start_writeback();
  auto data = pattern(block, 6);
  for (uint64_t b = 0; b < 16; ++b) ck_assert_int_eq(f.cache.write(*f.ch, b * block, data.data(), block), 0);
  for (int i = 0; i < 300 && f.cache.dirty_lines(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ck_assert_uint_eq(f.cache.dirty_lines(), 0);
  f.cache.stop_writeback();
  ck_assert(f.stored(15 * block, block) == data);
}
END_TEST

Suite *make_suite() {
  Suite *s = suite_create("page_cache");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, holes_read_as_zeros);
  tcase_add_test(tc, eviction_under_pressure_keeps_every_block);
  tcase_add_test(tc, writes_are_write_back);
  tcase_add_test(tc, partial_writes_keep_the_rest_of_the_block);
  tcase_add_test(tc, requests_spanning_blocks);
  tcase_add_test(tc, discard_makes_holes);
  tcase_add_test(tc, lazy_discard_gives_memory_back);
  tcase_add_loop_test(tc, concurrent_readers_writers_and_evictions, 0, 2);
  tcase_add_test(tc, a_small_write_to_a_stored_block_copies_nothing);
  tcase_add_test(tc, a_line_fetches_the_sectors_it_lacks);
  tcase_add_test(tc, discard_racing_writes_in_lazy_mode);
  tcase_add_test(tc, failed_write_back_keeps_the_data);
  tcase_add_test(tc, failed_fetch_is_an_error_not_zeros);
  tcase_add_test(tc, a_failed_submit_still_waits_for_the_copies_before_it);
  tcase_add_test(tc, the_store_learns_each_requests_length);
  tcase_add_test(tc, a_stalled_store_fails_instead_of_hanging);
  tcase_add_test(tc, writeback_wakes_up_between_its_check_and_its_sleep);
  tcase_add_test(tc, writeback_thread_cleans_the_cache);
  suite_add_tcase(s, tc);
  return s;
}
