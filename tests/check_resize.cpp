// Unit tests: a data file whose size changes while it is served (truncate):
// the host store's chunks, the cache's resize and a successor's settling,
// SETATTR and what GETATTR, STATFS and .stats then say, and max_size=.
#include "cache/extent_map.h"
#include "cache/page_cache.h"
#include "common/fault_injection.h"
#include "common/options.h"
#include "common/prepare_grow.h"
#include "common/stats.h"
#include "fuse/mount_state.h"
#include "fuse/operations.h"
#include "fuse/request.h"
#include "fuse/stats_text.h"
#include "store/host_store.h"
#include "faulty_host_store.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <thread>
#include <vector>

// Last: check.h defines macros (fail) that clash with the C++ library.
#include "check_main.h"
#include "small_filesystem.h"

using namespace vramfs;

namespace {

constexpr uint64_t chunk = host_store::chunk_bytes;  // 2 MiB
constexpr uint64_t block = 64 * 1024;
constexpr uint64_t blocks_per_chunk = chunk / block;

std::vector<uint8_t> pattern(size_t len, uint64_t seed) {
  std::vector<uint8_t> v(len);
  for (size_t i = 0; i < len; ++i) v[i] = uint8_t(seed * 37 + i * 11 + (i >> 9));
  return v;
}

// A file of `size` bytes that may grow to `max`, behind a cache of 8 lines
// (one set) or more, with the size recorded as a server records it.
struct fixture {
  fixture(uint64_t size, uint64_t max, bool lazy = false, uint64_t lines = 8)
      : store(size, lazy, max),
        extents((max + block - 1) / block),
        cache(store, extents, counters, block, lines * block),
        ch(store.open_channel()) {
    recorded = size;
  }

  int resize(uint64_t size) {
    return cache.resize(size, [this](uint64_t s) {
      // Recorded before it takes effect: a successor must never find a
      // size smaller than what requests were answered under.
      recorded_while = store.size();
      recorded = s;
    });
  }
  void write_blocks(uint64_t first, uint64_t count, uint64_t seed) {
    for (uint64_t b = first; b < first + count; ++b) {
      auto data = pattern(block, seed + b);
      ck_assert_int_eq(cache.write(*ch, b * block, data.data(), block), 0);
    }
  }
  void expect_blocks(uint64_t first, uint64_t count, uint64_t seed) {
    std::vector<uint8_t> got(block);
    for (uint64_t b = first; b < first + count; ++b) {
      ck_assert_int_eq(cache.read(*ch, b * block, got.data(), block), 0);
      ck_assert_msg(got == pattern(block, seed + b), "block %llu differs", (unsigned long long)b);
    }
  }
  void expect_zeros(uint64_t first, uint64_t count) {
    std::vector<uint8_t> got(block, 0xEE);
    for (uint64_t b = first; b < first + count; ++b) {
      ck_assert_int_eq(cache.read(*ch, b * block, got.data(), block), 0);
      ck_assert(got == std::vector<uint8_t>(block, 0));
    }
  }

  faulty_host_store store;  // VRAMFS_INJECT_FAULT's store faults, as the daemon has them
  extent_map extents;
  stats counters;
  page_cache cache;
  std::unique_ptr<store_channel> ch;
  uint64_t recorded = 0, recorded_while = 0;
};

}  // namespace

START_TEST(host_store_takes_and_gives_back_chunks_up_to_its_max) {
  host_store s(2 * chunk, false, 8 * chunk);
  ck_assert_uint_eq(s.size(), 2 * chunk);
  ck_assert_uint_eq(s.max_size(), 8 * chunk);
  ck_assert_uint_eq(s.held_bytes(), 2 * chunk);  // reserved: the size, not the max
  ck_assert_int_eq(s.ensure_backed(2 * chunk, 3 * chunk), 0);
  ck_assert_uint_eq(s.held_bytes(), 5 * chunk);
  s.release(3 * chunk, 5 * chunk);  // reserved memory goes back too
  ck_assert_uint_eq(s.held_bytes(), 3 * chunk);
  ck_assert_int_eq(s.ensure_backed(7 * chunk, 2 * chunk), -EINVAL);  // past the max
  // A copy past the size is refused even where memory is held.
  auto ch = s.open_channel();
  uint8_t byte = 1;
  ck_assert_int_eq(s.submit_write(*ch, 2 * chunk, &byte, 1), -EINVAL);
  s.set_size(3 * chunk);
  ck_assert_int_eq(s.submit_write(*ch, 2 * chunk, &byte, 1), 0);
}
END_TEST

START_TEST(kept_chunks_are_handed_over_and_dropped) {
  // With failover the chunks are memfds the keeper is given and told of.
  std::map<uint64_t, int> kept;
  std::vector<uint64_t> dropped;
  store_keeping keeping;
  keeping.keep_chunk = [&](uint64_t index, int fd, uint64_t bytes) {
    ck_assert_uint_gt(bytes, 0);  // RAM: the keeper maps it
    kept[index] = dup(fd);
    return 0;
  };
  keeping.drop_chunk = [&](uint64_t index) { dropped.push_back(index); };
  uint64_t max = 256 * 1024 * 1024;
  uint64_t c = kept_chunk_bytes(false, max);
  ck_assert_uint_eq(c, 4 * 1024 * 1024);  // 1/64 of the max
  {
    host_store s(max / 2, max, false, &keeping);
    ck_assert_uint_eq(s.chunk_size(), c);
    ck_assert_uint_eq(kept.size(), 32);
    auto ch = s.open_channel();
    auto data = pattern(4096, 3);
    ck_assert_int_eq(s.submit_write(*ch, max / 2 - 4096, data.data(), 4096), 0);
    s.release(max / 4, max - max / 4);
    ck_assert_uint_eq(dropped.size(), 16);
    ck_assert_uint_eq(dropped.front(), 16);
    ck_assert_uint_eq(s.held_bytes(), max / 4);
  }
  // A successor maps what the keeper holds, data and all, and drops
  // nothing by going away.
  for (uint64_t i : dropped) {
    close(kept[i]);
    kept.erase(i);
  }
  dropped.clear();
  store_keeping takeover = keeping;
  takeover.takeover = true;
  for (auto [index, fd] : kept) takeover.chunks.emplace_back(index, fd);
  {
    host_store s(max / 4, max, false, &takeover);
    ck_assert_uint_eq(s.held_bytes(), max / 4);
    s.set_size(max / 2);
    ck_assert_int_eq(s.ensure_backed(max / 4, max / 4), 0);
    ck_assert_uint_eq(kept.size(), 32);  // the new chunks handed over too
    auto ch = s.open_channel();
    std::vector<uint8_t> got(4096);
    ck_assert_int_eq(s.submit_read(*ch, max / 2 - 4096, got.data(), 4096), 0);
    ck_assert(got == std::vector<uint8_t>(4096, 0));  // a new chunk: what was there is gone
  }
  ck_assert(dropped.empty());
  for (auto [index, fd] : kept) close(fd);
}
END_TEST

START_TEST(shrink_drops_what_lies_past_the_end_and_gives_its_memory_back) {
  fixture f(4 * chunk, 4 * chunk);
  uint64_t blocks = 4 * blocks_per_chunk;
  f.write_blocks(0, blocks, 1);
  ck_assert_int_eq(f.cache.flush(*f.ch), 0);
  // Some of the last blocks dirty in the cache, some of the first too.
  f.write_blocks(blocks - 4, 4, 2);
  f.write_blocks(0, 2, 3);
  ck_assert_int_eq(f.resize(2 * chunk + 5 * block), 0);
  ck_assert_uint_eq(f.recorded, 2 * chunk + 5 * block);
  ck_assert_uint_eq(f.recorded_while, 4 * chunk);
  ck_assert_uint_eq(f.store.size(), 2 * chunk + 5 * block);
  // The chunk the end lies in stays; the one wholly past it goes.
  ck_assert_uint_eq(f.store.held_bytes(), 3 * chunk);
  ck_assert_uint_eq(f.extents.blocks_with_data(), 2 * blocks_per_chunk + 5);
  ck_assert_uint_le(f.cache.dirty_lines(), 2);  // the dropped ones are not counted
  f.expect_blocks(0, 2, 3);
  f.expect_blocks(2, 2 * blocks_per_chunk + 3, 1);
  std::vector<uint8_t> buf(block);
  ck_assert_int_eq(f.cache.read(*f.ch, 2 * chunk + 5 * block, buf.data(), block), -EINVAL);
  ck_assert_int_eq(f.cache.write(*f.ch, 3 * chunk, buf.data(), block), -EINVAL);
  ck_assert_int_eq(f.cache.flush(*f.ch), 0);
  ck_assert_uint_eq(f.cache.dirty_lines(), 0);
}
END_TEST

START_TEST(grow_takes_the_memory_and_the_new_part_reads_as_zeros) {
  fixture f(4 * chunk, 4 * chunk);
  f.write_blocks(0, 4 * blocks_per_chunk, 5);
  ck_assert_int_eq(f.resize(chunk), 0);
  ck_assert_uint_eq(f.store.held_bytes(), chunk);
  ck_assert_int_eq(f.resize(4 * chunk), 0);
  ck_assert_uint_eq(f.recorded_while, chunk);
  ck_assert_uint_eq(f.store.held_bytes(), 4 * chunk);  // reserved: at once
  f.expect_blocks(0, blocks_per_chunk, 5);
  f.expect_zeros(blocks_per_chunk, 3 * blocks_per_chunk);
  f.write_blocks(blocks_per_chunk, 3 * blocks_per_chunk, 6);
  ck_assert_int_eq(f.cache.flush(*f.ch), 0);
  f.expect_blocks(blocks_per_chunk, 3 * blocks_per_chunk, 6);
}
END_TEST

START_TEST(a_grow_without_the_memory_changes_nothing) {
  fixture f(chunk, 6 * chunk);
  f.write_blocks(0, 4, 7);
  ck_assert(!fault_injection::configure("alloc:3"));  // the third new chunk
  ck_assert_int_eq(f.resize(6 * chunk), -ENOSPC);
  ck_assert(!fault_injection::configure(""));
  ck_assert_uint_eq(f.store.size(), chunk);
  ck_assert_uint_eq(f.recorded, chunk);  // never recorded
  ck_assert_uint_eq(f.store.held_bytes(), chunk);  // what it took is back
  f.expect_blocks(0, 4, 7);
  ck_assert_int_eq(f.resize(6 * chunk), 0);  // and it can be asked again
  ck_assert_uint_eq(f.store.held_bytes(), 6 * chunk);
}
END_TEST

START_TEST(sizes_are_whole_blocks_up_to_the_max) {
  uint64_t max = 3 * chunk + 4096;  // the max need not be whole blocks
  fixture f(max, max);
  ck_assert_int_eq(f.resize(max + 4096), -EFBIG);
  ck_assert_int_eq(f.resize(chunk + 4096), -EINVAL);
  ck_assert_uint_eq(f.store.size(), max);
  ck_assert_int_eq(f.resize(chunk), 0);
  ck_assert_int_eq(f.resize(max), 0);
  ck_assert_uint_eq(f.store.size(), max);
  // The short last block is whole again, and works.
  auto data = pattern(4096, 9);
  ck_assert_int_eq(f.cache.write(*f.ch, max - 4096, data.data(), 4096), 0);
  ck_assert_int_eq(f.cache.flush(*f.ch), 0);
  std::vector<uint8_t> got(4096);
  ck_assert_int_eq(f.cache.read(*f.ch, max - 4096, got.data(), 4096), 0);
  ck_assert(got == data);
}
END_TEST

START_TEST(lazy_shrink_keeps_only_chunks_with_data_below_the_end) {
  fixture f(4 * chunk, 4 * chunk, true);
  f.write_blocks(0, 1, 1);                          // chunk 0
  f.write_blocks(blocks_per_chunk + 3, 1, 1);       // chunk 1, below the new end
  f.write_blocks(2 * blocks_per_chunk + 8, 1, 1);   // chunk 2, past it
  f.write_blocks(3 * blocks_per_chunk, 1, 1);       // chunk 3
  ck_assert_uint_eq(f.store.held_bytes(), 4 * chunk);
  ck_assert_int_eq(f.resize(2 * chunk + 4 * block), 0);
  ck_assert_uint_eq(f.store.held_bytes(), 2 * chunk);  // chunk 2 held nothing below the end
  ck_assert_uint_eq(f.extents.blocks_with_data(), 2);
  ck_assert_int_eq(f.resize(4 * chunk), 0);
  ck_assert_uint_eq(f.store.held_bytes(), 2 * chunk);  // lazy: taken by the writes
  f.expect_zeros(2 * blocks_per_chunk + 8, 1);
  f.expect_zeros(3 * blocks_per_chunk, 1);
  f.expect_blocks(blocks_per_chunk + 3, 1, 1);
}
END_TEST

// _i: 0 reserved, 1 lazy.
START_TEST(resizes_racing_readers_and_writers) {
  // Writers and readers over the whole largest range while the file
  // shrinks and grows under them, with the write-back thread running.
  // Requests past the end fail with EINVAL and nothing else; the blocks
  // below the smallest size keep their data; nothing is cached, marked or
  // held past the end after each resize.
  bool lazy = _i == 1;
  fixture f(4 * chunk, 4 * chunk, lazy, 32);
  uint64_t low = chunk;  // never resized below
  uint64_t low_blocks = low / block;
  f.write_blocks(0, low_blocks, 11);
  f.cache.start_writeback();
  std::atomic<bool> stop{false}, bad{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t)
    threads.emplace_back([&, t] {
      auto ch = f.store.open_channel();
      std::mt19937 rng{unsigned(t)};
      std::vector<uint8_t> buf(block);
      while (!stop) {
        uint64_t b = low_blocks + rng() % (4 * blocks_per_chunk - low_blocks);
        int err = t == 2 ? f.cache.read(*ch, b * block, buf.data(), 4096)
                         : f.cache.write(*ch, b * block, buf.data(), 4096);
        if (err && err != -EINVAL) bad = true;
        uint64_t mine = rng() % low_blocks;
        if (f.cache.read(*ch, mine * block, buf.data(), block) || buf != pattern(block, 11 + mine))
          bad = true;
      }
    });
  for (int round = 0; round < 200 && !bad; ++round) {
    uint64_t size = low + (round % 3) * chunk + (round % 7) * block;
    ck_assert_int_eq(f.resize(size), 0);
    if (!lazy) ck_assert_uint_eq(f.store.held_bytes(), (size + chunk - 1) / chunk * chunk);
    else ck_assert_uint_le(f.store.held_bytes(), (size + chunk - 1) / chunk * chunk);
  }
  stop = true;
  for (auto &t : threads) t.join();
  f.cache.stop_writeback();
  ck_assert(!bad);
  uint64_t end_block = f.store.size() / block;
  for (uint64_t b = end_block; b < f.extents.blocks(); ++b) ck_assert(!f.extents.has_data(b));
  f.expect_blocks(0, low_blocks, 11);
}
END_TEST

START_TEST(a_successor_settles_a_resize_its_predecessor_left_half_done) {
  // A shrink recorded, then the server died before it gave anything back;
  // and a grow whose memory was taken, then it died before it recorded.
  fixture f(4 * chunk, 4 * chunk);
  f.write_blocks(0, 4 * blocks_per_chunk, 2);
  f.cache.settle_size(2 * chunk);
  ck_assert_uint_eq(f.store.size(), 2 * chunk);
  ck_assert_uint_eq(f.store.held_bytes(), 2 * chunk);
  ck_assert_uint_eq(f.extents.blocks_with_data(), 2 * blocks_per_chunk);
  f.expect_blocks(0, 2 * blocks_per_chunk, 2);
  ck_assert_int_eq(f.store.ensure_backed(2 * chunk, 2 * chunk), 0);
  ck_assert_uint_eq(f.store.held_bytes(), 4 * chunk);
  f.cache.settle_size(2 * chunk);
  ck_assert_uint_eq(f.store.held_bytes(), 2 * chunk);
  f.expect_blocks(0, 2 * blocks_per_chunk, 2);
}
END_TEST

START_TEST(a_prepared_grow_holds_its_memory_before_the_truncate) {
  fixture f(chunk, 4 * chunk);
  f.write_blocks(0, blocks_per_chunk, 3);
  ck_assert_int_eq(f.cache.reserve_for_grow(4 * chunk), 0);
  // Held, not grown: nothing past the end is readable yet.
  ck_assert_uint_eq(f.store.size(), chunk);
  ck_assert_uint_eq(f.recorded, chunk);
  ck_assert_uint_eq(f.store.held_bytes(), 4 * chunk);
  // The grow finds it held.
  ck_assert_int_eq(f.resize(4 * chunk), 0);
  ck_assert_uint_eq(f.store.held_bytes(), 4 * chunk);
  f.expect_blocks(0, blocks_per_chunk, 3);
  f.expect_zeros(blocks_per_chunk, 3 * blocks_per_chunk);
  // Asking for less than the size takes nothing; past max_size, refused.
  ck_assert_int_eq(f.cache.reserve_for_grow(chunk), 0);
  ck_assert_int_eq(f.cache.reserve_for_grow(4 * chunk + block), -EFBIG);
  ck_assert_uint_eq(f.store.held_bytes(), 4 * chunk);
}
END_TEST

START_TEST(what_no_grow_used_goes_back_at_the_next_resize_or_takeover) {
  fixture f(chunk, 4 * chunk);
  // A smaller grow than prepared: the rest goes back.
  ck_assert_int_eq(f.cache.reserve_for_grow(4 * chunk), 0);
  ck_assert_int_eq(f.resize(2 * chunk), 0);
  ck_assert_uint_eq(f.store.held_bytes(), 2 * chunk);
  // A truncate to the size it has (the grow never came, or was refused).
  ck_assert_int_eq(f.cache.reserve_for_grow(4 * chunk), 0);
  ck_assert_int_eq(f.resize(2 * chunk), 0);
  ck_assert_uint_eq(f.store.held_bytes(), 2 * chunk);
  // A successor settling the size after the server died in between.
  ck_assert_int_eq(f.cache.reserve_for_grow(4 * chunk), 0);
  f.cache.settle_size(2 * chunk);
  ck_assert_uint_eq(f.store.held_bytes(), 2 * chunk);
  // Without the memory: nothing kept.
  ck_assert(!fault_injection::configure("alloc:2"));
  ck_assert_int_eq(f.cache.reserve_for_grow(4 * chunk), -ENOSPC);
  ck_assert(!fault_injection::configure(""));
  ck_assert_uint_eq(f.store.held_bytes(), 2 * chunk);
  // Lazy mode takes nothing: its grows take nothing either.
  fixture lazy(chunk, 4 * chunk, true);
  uint64_t held = lazy.store.held_bytes();
  ck_assert_int_eq(lazy.cache.reserve_for_grow(4 * chunk), 0);
  ck_assert_uint_eq(lazy.store.held_bytes(), held);
}
END_TEST

namespace {

// A mount's filesystem of 4 MiB that may grow to 8, reserved.
struct mount_fixture : small_filesystem {
  static constexpr uint64_t size = 2 * chunk, max = 4 * chunk;
  mount_fixture() : small_filesystem(size, false, max) {}

  int truncate(uint64_t to) {
    fuse::setattr_in s{};
    s.valid = fuse::fattr_size;
    s.size = to;
    return send(fuse::op_setattr, fuse::data_ino, &s, sizeof s).error;
  }
  uint64_t getattr_size() {
    fuse::getattr_in g{};
    ck_assert_int_eq(send(fuse::op_getattr, fuse::data_ino, &g, sizeof g).error, 0);
    fuse::attr_out a;
    memcpy(&a, out.data(), sizeof a);
    return a.attr.size;
  }
  std::string stat_text(const char *key) {
    std::string text = fuse::render_stats_text(fs);
    size_t at = text.find(std::string("\n") + key + " ");
    ck_assert_msg(at != std::string::npos, "no %s in .stats", key);
    at += strlen(key) + 2;
    return text.substr(at, text.find('\n', at) - at);
  }
  // vramfs --prepare-grow's ioctl, as the kernel sends it.
  fuse::answer prepare_grow(uint64_t to, uint64_t nodeid = fuse::data_ino,
                            uint32_t cmd = prepare_grow_ioctl, size_t payload = sizeof(uint64_t)) {
    fuse::ioctl_in in{};
    in.cmd = cmd;
    in.in_size = sizeof to;
    return send(fuse::op_ioctl, nodeid, &in, sizeof in, &to, payload);
  }
  // (Not ck_assert_str_eq on .c_str() of temporaries: the macro keeps the
  // pointers past the statement that made them.)
  void expect_stat(const char *key, uint64_t want) {
    std::string got = stat_text(key);
    ck_assert_msg(got == std::to_string(want), ".stats %s is %s, not %llu", key, got.c_str(),
                  (unsigned long long)want);
  }

};

}  // namespace

START_TEST(truncate_resizes_and_getattr_statfs_and_stats_follow) {
  mount_fixture m;
  ck_assert_uint_eq(m.getattr_size(), m.size);
  m.expect_stat("max_size_bytes", m.max);
  ck_assert_int_eq(m.truncate(m.max), 0);
  ck_assert_uint_eq(m.getattr_size(), m.max);
  ck_assert_uint_eq(m.state.file_size.load(), m.max);
  ck_assert_uint_eq(m.store.held_bytes(), m.max);
  m.expect_stat("size_bytes", m.max);
  m.expect_stat("resizes", 1);
  m.expect_stat("last_resize_from_bytes", m.size);
  ck_assert_int_eq(m.truncate(chunk), 0);
  ck_assert_uint_eq(m.getattr_size(), chunk);
  ck_assert_uint_eq(m.store.held_bytes(), chunk);
  m.expect_stat("held_bytes", chunk);
  m.expect_stat("last_resize_to_bytes", chunk);
  ck_assert(m.send(fuse::op_statfs, fuse::root_ino, nullptr, 0).error == 0);
  fuse::statfs_out s;
  memcpy(&s, m.out.data(), sizeof s);
  ck_assert_uint_eq(s.st.blocks, chunk / block);
  // Refusals change nothing.
  ck_assert_int_eq(m.truncate(m.max + block), -EFBIG);
  ck_assert_int_eq(m.truncate(chunk + 100), -EINVAL);
  ck_assert_uint_eq(m.getattr_size(), chunk);
  m.expect_stat("resizes", 2);
  // A write past the end is refused; a read past it reads nothing.
  fuse::read_in r{};
  r.offset = chunk;
  r.size = 4096;
  fuse::answer a = m.send(fuse::op_read, fuse::data_ino, &r, sizeof r);
  ck_assert_int_eq(a.error, 0);
  ck_assert_uint_eq(a.length, 0);
}
END_TEST

START_TEST(the_prepare_grow_ioctl_takes_the_memory_and_truncate_moves_the_end) {
  mount_fixture m;
  fuse::answer a = m.prepare_grow(m.max);
  ck_assert_int_eq(a.error, 0);
  ck_assert_uint_eq(a.length, sizeof(fuse::ioctl_out));  // the kernel reads one
  ck_assert_uint_eq(m.getattr_size(), m.size);
  m.expect_stat("held_bytes", m.max);
  m.expect_stat("resizes", 0);
  ck_assert_int_eq(m.truncate(m.max), 0);
  m.expect_stat("size_bytes", m.max);
  m.expect_stat("held_bytes", m.max);
  // Refused: past max_size; another command, or another file; an argument
  // cut short; a caller who owns neither the file nor the machine.
  ck_assert_int_eq(m.prepare_grow(m.max + block).error, -EFBIG);
  ck_assert_int_eq(m.prepare_grow(m.max, fuse::data_ino, prepare_grow_ioctl + 1).error, -ENOTTY);
  ck_assert_int_eq(m.prepare_grow(m.max, fuse::root_ino).error, -ENOTTY);
  ck_assert_int_eq(m.prepare_grow(m.max, fuse::data_ino, prepare_grow_ioctl, 4).error, -EINVAL);
  m.uid = m.fs.owner_uid + 1;
  ck_assert_int_eq(m.prepare_grow(m.max).error, -EPERM);
  m.expect_stat("errors", 0);
}
END_TEST

START_TEST(max_size_option) {
  auto parse = [](std::vector<const char *> args, options *o) {
    args.insert(args.begin(), "vramfs");
    return parse_command_line(int(args.size()), args.data(), o);
  };
  options o;
  ck_assert(!parse({"/mnt", "-o", "backend=host,size=1G,max_size=4G"}, &o));
  ck_assert(o.max_size && o.max_size->bytes == 4 * GiB);
  auto err = parse({"/mnt", "-o", "size=4G,max_size=1G"}, &o);
  ck_assert(err && err->find("max_size=1G is smaller than size=4G") != std::string::npos);
  err = parse({"/mnt", "-o", "size=4G,max_size=5000"}, &o);
  ck_assert(err && err->find("multiple of 4K") != std::string::npos);
  ck_assert(!parse({"/mnt", "-o", "max_size=90%"}, &o));
  ck_assert_uint_eq(o.max_size->percent, 90);
}
END_TEST

Suite *make_suite() {
  Suite *s = suite_create("resize");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, host_store_takes_and_gives_back_chunks_up_to_its_max);
  tcase_add_test(tc, kept_chunks_are_handed_over_and_dropped);
  tcase_add_test(tc, shrink_drops_what_lies_past_the_end_and_gives_its_memory_back);
  tcase_add_test(tc, grow_takes_the_memory_and_the_new_part_reads_as_zeros);
  tcase_add_test(tc, a_grow_without_the_memory_changes_nothing);
  tcase_add_test(tc, sizes_are_whole_blocks_up_to_the_max);
  tcase_add_test(tc, lazy_shrink_keeps_only_chunks_with_data_below_the_end);
  tcase_add_loop_test(tc, resizes_racing_readers_and_writers, 0, 2);
  tcase_add_test(tc, a_successor_settles_a_resize_its_predecessor_left_half_done);
  tcase_add_test(tc, a_prepared_grow_holds_its_memory_before_the_truncate);
  tcase_add_test(tc, what_no_grow_used_goes_back_at_the_next_resize_or_takeover);
  tcase_add_test(tc, truncate_resizes_and_getattr_statfs_and_stats_follow);
  tcase_add_test(tc, the_prepare_grow_ioctl_takes_the_memory_and_truncate_moves_the_end);
  tcase_add_test(tc, max_size_option);
  suite_add_tcase(s, tc);
  return s;
}
