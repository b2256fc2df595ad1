// Unit tests: the cuda store, and the page cache over it.  Skipped (77),
// saying why, where no GPU is usable.  Fork mode is off (CUDA cannot be
// used in a child forked after the parent started it), so the tests run in
// one process, one after the other.
#include "cache/extent_map.h"
#include "cache/page_cache.h"
#include "common/fault_injection.h"
#include "common/options.h"
#include "common/stats.h"
#include "store/block_store.h"
#include "store/cuda_store.h"
#include "store/faulty_store.h"
#include "store_copy.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

// Last: check.h defines macros (fail) that clash with the C++ library.
#include "check_main.h"

using namespace vramfs;

namespace {

std::unique_ptr<block_store> make_store(const std::string &opts_text, std::string *error,
                                        engine_abi::launcher launch = nullptr) {
  options o;
  std::vector<const char *> args = {"vramfs", "/mnt", "-o", opts_text.c_str()};
  auto err = parse_command_line(int(args.size()), args.data(), &o);
  ck_assert_msg(!err, "%s", err ? err->c_str() : "");
  error->clear();
  return create_cuda_store(o, error, nullptr, launch);
}

std::unique_ptr<block_store> must_make_store(const std::string &opts_text,
                                             engine_abi::launcher launch = nullptr) {
  std::string error;
  auto store = make_store(opts_text, &error, launch);
  ck_assert_msg(store != nullptr, "%s: %s", opts_text.c_str(), error.c_str());
  return store;
}

void must_fail(const std::string &opts_text, std::initializer_list<const char *> wanted) {
  std::string error;
  ck_assert_msg(!make_store(opts_text, &error), "%s was accepted", opts_text.c_str());
  for (const char *w : wanted)
    ck_assert_msg(error.find(w) != std::string::npos, "%s: '%s' lacks '%s'", opts_text.c_str(),
                  error.c_str(), w);
}


uint64_t free_vram() {
  size_t free_bytes = 0, total = 0;
  ck_assert_int_eq(cudaMemGetInfo(&free_bytes, &total), cudaSuccess);
  return free_bytes;
}

// Host memory from the store (pinned), freed with it.
struct host_buffer {
  host_buffer(block_store &s, size_t n) : store(s), len(n) {
    data = static_cast<uint8_t *>(s.alloc_host(n));
  }
  ~host_buffer() { store.free_host(data, len); }
  block_store &store;
  size_t len;
  uint8_t *data;
};

void fill(uint8_t *p, size_t len, uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i < len; ++i) p[i] = uint8_t(rng() >> 29);
}

bool all_zero(const uint8_t *p, size_t len) {
  for (size_t i = 0; i < len; ++i)
    if (p[i]) return false;
  return true;
}

std::string uuid_of(int device) {
  cudaDeviceProp prop;
  ck_assert_int_eq(cudaGetDeviceProperties(&prop, device), cudaSuccess);
  return gpu_uuid_text(reinterpret_cast<const unsigned char *>(prop.uuid.bytes));
}

void reset_faults() { fault_injection::configure(""); }

// The store as the daemon builds it when VRAMFS_INJECT_FAULT names a store
// fault: the real one inside the fault-injecting decorator.
std::unique_ptr<block_store> must_make_faulty_store(const std::string &opts_text) {
  return std::make_unique<faulty_store>(must_make_store(opts_text));
}

// A GPU where the copy engine's kernel cannot start.
cudaError_t refused_launch(engine_abi::shared_area *, engine_abi::grid_state *, unsigned,
                          uint64_t, uint64_t, cudaStream_t) {
  return cudaErrorInvalidDeviceFunction;
}

}  // namespace

START_TEST(reserved_round_trip) {
  auto s = must_make_store("size=64M");
  ck_assert_str_eq(s->backend(), "cuda");
  ck_assert_uint_eq(s->size(), 64 << 20);
  ck_assert_uint_eq(s->held_bytes(), 64 << 20);
  ck_assert_uint_eq(s->chunk_size(), 2 << 20);
  ck_assert_int_eq(s->ensure_backed(0, 64 << 20), 0);  // reserved: nothing to do
  auto ch = s->open_channel();
  // Ranges at odd offsets and of odd lengths, several across the 2 MiB
  // boundaries, all queued on one stream before one wait.
  struct range { uint64_t off; size_t len; };
  const range ranges[] = {{0, 1},
                          {(2 << 20) - 777, 3 * 1024 * 1024 + 1234},
                          {(8 << 20) + 4095, 4097},
                          {(16 << 20) - 1, 2},
                          {(20 << 20) + 12345, 8 << 20},
                          {(64 << 20) - 5000, 5000}};
  std::vector<std::unique_ptr<host_buffer>> in, out;
  for (size_t i = 0; i < std::size(ranges); ++i) {
    in.push_back(std::make_unique<host_buffer>(*s, ranges[i].len));
    out.push_back(std::make_unique<host_buffer>(*s, ranges[i].len));
    fill(in[i]->data, ranges[i].len, i);
    ck_assert_int_eq(s->submit_write(*ch, ranges[i].off, in[i]->data, ranges[i].len), 0);
  }
  ck_assert_int_eq(s->wait(*ch), 0);
  for (size_t i = 0; i < std::size(ranges); ++i) {
    memset(out[i]->data, 0xEE, ranges[i].len);
    ck_assert_int_eq(s->submit_read(*ch, ranges[i].off, out[i]->data, ranges[i].len), 0);
  }
  ck_assert_int_eq(s->wait(*ch), 0);
  for (size_t i = 0; i < std::size(ranges); ++i)
    ck_assert_msg(memcmp(in[i]->data, out[i]->data, ranges[i].len) == 0, "range %zu differs", i);
  // The fixed cost of one small copy through the store (docs/design.md: about
  // 7.5-8 us for the raw CUDA copy on the H100 here).
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 5000; ++i) {
    ck_assert_int_eq(copy_in(*s, *ch, uint64_t(i % 512) * 4096, in[1]->data, 4096), 0);
    ck_assert_int_eq(copy_out(*s, *ch, uint64_t(i % 512) * 4096, out[1]->data, 4096), 0);
  }
  double us =
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
  printf("4 KiB copy plus wait, one thread: %.1f us each\n", us / 10000);
  ck_assert_int_eq(s->submit_read(*ch, (64 << 20) - 10, out[0]->data, 11), -EINVAL);
  ck_assert_int_eq(s->submit_write(*ch, 0, in[0]->data, 0), -EINVAL);
}
END_TEST

START_TEST(parallel_channels) {
  // Eight threads, each on its own stream, write and read back their own
  // 4 MiB in pieces of every size at once.
  auto s = must_make_store("size=32M");
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      auto ch = s->open_channel();
      const size_t region = 4 << 20;
      host_buffer in(*s, region), out(*s, region);
      fill(in.data, region, 100 + t);
      std::mt19937_64 rng(t);
      for (size_t done = 0; done < region;) {
        size_t len = std::min<size_t>(region - done, 1 + rng() % (300 << 10));
        if (s->submit_write(*ch, t * region + done, in.data + done, len)) ++failures;
        done += len;
      }
      if (s->wait(*ch) || copy_out(*s, *ch, t * region, out.data, region) ||
          memcmp(in.data, out.data, region))
        ++failures;
    });
  for (auto &t : threads) t.join();
  ck_assert_int_eq(failures.load(), 0);
}
END_TEST

START_TEST(lazy_backs_and_gives_back) {
  auto s = must_make_store("size=1G,lazy");
  ck_assert(s->lazy());
  ck_assert_uint_eq(s->held_bytes(), 0);
  const uint64_t chunk = s->chunk_size();
  ck_assert_msg(chunk >= 64 << 10 && (chunk & (chunk - 1)) == 0, "chunk %llu",
                (unsigned long long)chunk);
  auto ch = s->open_channel();
  host_buffer buf(*s, 3 * chunk);
  // Unbacked: a write is refused (not a GPU page fault), a read is zeros.
  ck_assert_int_eq(copy_in(*s, *ch, chunk, buf.data, 1), -EIO);
  memset(buf.data, 0xEE, chunk);
  ck_assert_int_eq(copy_out(*s, *ch, chunk - 10, buf.data, 20), 0);
  ck_assert(all_zero(buf.data, 20));

  uint64_t before = free_vram();
  auto t0 = std::chrono::steady_clock::now();
  ck_assert_int_eq(s->ensure_backed(0, 256 << 20), 0);
  double map_us =
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
  ck_assert_uint_eq(s->held_bytes(), 256 << 20);
  uint64_t during = free_vram();
  ck_assert_uint_ge(before - during, (256 << 20) - chunk);
  ck_assert_int_eq(s->ensure_backed(100, 1 << 20), 0);  // already backed
  ck_assert_uint_eq(s->held_bytes(), 256 << 20);

  // Across the boundaries of three chunks, at odd offsets.
  fill(buf.data, 2 * chunk + 999, 7);
  ck_assert_int_eq(copy_in(*s, *ch, 10 * chunk - 333, buf.data, 2 * chunk + 999), 0);
  host_buffer back(*s, 3 * chunk);
  ck_assert_int_eq(copy_out(*s, *ch, 10 * chunk - 333, back.data, 2 * chunk + 999), 0);
  ck_assert(memcmp(buf.data, back.data, 2 * chunk + 999) == 0);

  // Give back the middle chunk: it reads as zeros, its neighbours keep
  // their data, and the held figure drops by one chunk.
  s->release(10 * chunk, chunk);
  ck_assert_uint_eq(s->held_bytes(), (256 << 20) - chunk);
  ck_assert_int_eq(copy_out(*s, *ch, 10 * chunk - 333, back.data, 2 * chunk + 999), 0);
  ck_assert(memcmp(buf.data, back.data, 333) == 0);
  ck_assert(all_zero(back.data + 333, chunk));
  ck_assert(memcmp(buf.data + 333 + chunk, back.data + 333 + chunk, chunk + 666) == 0);

  t0 = std::chrono::steady_clock::now();
  s->release(0, 1 << 30);
  double unmap_us =
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
  printf("lazy: %llu chunks of %llu KiB mapped in %.0f us each, given back in %.0f us each\n",
         (unsigned long long)((256 << 20) / chunk), (unsigned long long)(chunk >> 10),
         map_us / double((256 << 20) / chunk), unmap_us / double((256 << 20) / chunk - 1));
  ck_assert_uint_eq(s->held_bytes(), 0);
  ck_assert_uint_ge(free_vram(), during + (256 << 20) - chunk);
}
END_TEST

START_TEST(lazy_backing_from_many_threads) {
  // Threads back and give back overlapping chunks at once; the held figure
  // must match what is mapped in the end, and every chunk must work.
  auto s = must_make_store("size=256M,lazy");
  const uint64_t chunk = s->chunk_size(), chunks = (256 << 20) / chunk;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      for (int i = 0; i < 500; ++i) {
        uint64_t c = rng() % chunks;
        uint64_t off = c * chunk + rng() % chunk;
        uint64_t len = std::min<uint64_t>(1 + rng() % chunk, (256 << 20) - off);
        if (i % 3 == 2) s->release(c * chunk, chunk);
        else if (s->ensure_backed(off, len)) ++failures;
      }
    });
  for (auto &t : threads) t.join();
  ck_assert_int_eq(failures.load(), 0);
  ck_assert_int_eq(s->ensure_backed(0, 256 << 20), 0);
  ck_assert_uint_eq(s->held_bytes(), 256 << 20);
  auto ch = s->open_channel();
  host_buffer buf(*s, 1 << 20);
  fill(buf.data, 1 << 20, 3);
  for (uint64_t c = 0; c < chunks; ++c)
    ck_assert_int_eq(s->submit_write(*ch, c * chunk + chunk / 2, buf.data, 4096), 0);
  ck_assert_int_eq(s->wait(*ch), 0);
  s->release(0, 256 << 20);
  ck_assert_uint_eq(s->held_bytes(), 0);
}
END_TEST

START_TEST(lazy_allocation_failure_is_enospc) {
  auto s = must_make_faulty_store("size=64M,lazy");
  const uint64_t chunk = s->chunk_size();
  ck_assert(!fault_injection::configure("alloc:3"));
  ck_assert_int_eq(s->ensure_backed(0, 5 * chunk), -ENOSPC);
  ck_assert_uint_eq(s->held_bytes(), 2 * chunk);  // the first two stay
  ck_assert_int_eq(s->ensure_backed(0, 5 * chunk), 0);
  ck_assert_uint_eq(s->held_bytes(), 5 * chunk);
}
END_TEST

START_TEST(bad_devices_and_sizes) {
  int count = 0;
  ck_assert_int_eq(cudaGetDeviceCount(&count), cudaSuccess);
  std::string has = "this machine has " + std::to_string(count) + " GPU";
  must_fail("size=64M,device=99", {"device=99", has.c_str()});
  must_fail("size=64M,device=0000:ff:1f.7", {"device=0000:ff:1f.7", has.c_str()});
  must_fail("size=64M,device=GPU-00000000-1111-2222-3333-444444444444",
            {"device=GPU-00000000-1111-2222-3333-444444444444", has.c_str()});
  must_fail("size=64M,device=nonsense", {"device=nonsense", "no such GPU"});
  // Both figures: what was asked for and what there is.
  must_fail("size=64T", {"size=64T is larger than the ", " of free VRAM on GPU 0 ("});
  must_fail("size=64T,lazy", {"size=64T is larger than the ", " of VRAM on GPU 0 ("});
  must_fail("reserve=64T", {"of free VRAM, not more than reserve=64T"});
  std::string error;
  make_store("size=64T", &error);
  printf("size error: %s\n", error.c_str());
  make_store("size=64M,device=99", &error);
  printf("device error: %s\n", error.c_str());
}
END_TEST

START_TEST(device_by_index_bus_id_and_uuid) {
  char bus[32];
  ck_assert_int_eq(cudaDeviceGetPCIBusId(bus, sizeof bus, 0), cudaSuccess);
  auto s = must_make_store(std::string("size=64M,device=") + bus);
  printf("device(): %s\n", s->device().c_str());
  ck_assert_msg(s->device().find(bus) != std::string::npos, "%s", s->device().c_str());
  // nvidia-smi writes the domain with 8 digits.
  must_make_store(std::string("size=64M,device=0000") + bus);
  must_make_store("size=64M,device=0");
  std::string uuid = uuid_of(0);
  must_make_store("size=64M,device=" + uuid);
  must_make_store("size=64M,device=" + uuid.substr(4));  // without "GPU-"
}
END_TEST

START_TEST(uuid_text_is_what_nvidia_smi_prints) {
  const unsigned char bytes[16] = {0xdb, 0x17, 0x32, 0xe8, 0x1d, 0x18, 0x8d, 0xf2,
                                   0xff, 0xd1, 0x82, 0x77, 0x8d, 0xf8, 0x8c, 0x6c};
  std::string text = gpu_uuid_text(bytes);
  ck_assert_str_eq(text.c_str(), "GPU-db1732e8-1d18-8df2-ffd1-82778df88c6c");
}
END_TEST

START_TEST(sizes_from_free_and_total_vram) {
  size_t free_now = 0, total = 0;
  ck_assert_int_eq(cudaMemGetInfo(&free_now, &total), cudaSuccess);
  // Lazy, so that nothing is taken and free VRAM stays as it was.
  auto s = must_make_store("reserve=1G,lazy");
  ck_assert_uint_eq(s->size() % (64 << 10), 0);
  ck_assert_uint_le(s->size(), free_now - (1ull << 30) + (64 << 20));
  ck_assert_uint_ge(s->size() + (1ull << 30) + (64 << 20), free_now);
  s.reset();
  s = must_make_store("size=10%,lazy,block=1M");
  ck_assert_uint_eq(s->size(), total / 10 / (1 << 20) * (1 << 20));
  s.reset();
  s = must_make_store("size=1%");  // reserved: taken at once
  ck_assert_uint_ge(free_now - free_vram(), total / 100 - (64 << 20));
}
END_TEST

START_TEST(injected_copy_failure) {
  auto s = must_make_faulty_store("size=64M");
  auto ch = s->open_channel();
  host_buffer in(*s, 4096), out(*s, 4096);
  fill(in.data, 4096, 1);
  ck_assert(!fault_injection::configure("copy:2"));
  ck_assert_int_eq(copy_in(*s, *ch, 0, in.data, 4096), 0);
  ck_assert_int_eq(copy_in(*s, *ch, 4096, in.data, 4096), -EIO);
  ck_assert_int_eq(copy_out(*s, *ch, 0, out.data, 4096), 0);  // the next one works
  ck_assert(memcmp(in.data, out.data, 4096) == 0);
}
END_TEST

START_TEST(injected_device_loss) {
  auto s = must_make_faulty_store("size=64M,lazy");
  auto ch = s->open_channel();
  host_buffer buf(*s, 4096);
  ck_assert_int_eq(s->ensure_backed(0, 4096), 0);
  ck_assert(!fault_injection::configure("sticky:2"));
  ck_assert_int_eq(copy_in(*s, *ch, 0, buf.data, 4096), 0);
  ck_assert_int_eq(copy_out(*s, *ch, 0, buf.data, 4096), -EIO);
  // From now on everything fails at once, without calling CUDA.
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 10000; ++i) {
    ck_assert_int_eq(s->submit_read(*ch, 0, buf.data, 4096), -EIO);
    ck_assert_int_eq(s->submit_write(*ch, 0, buf.data, 4096), -EIO);
    ck_assert_int_eq(s->wait(*ch), -EIO);
    ck_assert_int_eq(s->ensure_backed(8 << 20, 4096), -EIO);
  }
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ck_assert_msg(seconds < 1.0, "40000 failed operations took %.2f s", seconds);
  auto other = s->open_channel();  // a new channel on a failed store: still EIO
  ck_assert_int_eq(s->wait(*other), -EIO);
}
END_TEST

START_TEST(page_cache_over_vram) {
  // 16 MiB of 64 KiB blocks (256 blocks) through an 8-line cache, so every
  // line is evicted and written back over and over.  _i: 0 reserved, 1 lazy
  // with the write-back thread running beside.
  const bool lazy = _i == 1;
  auto s = must_make_store(lazy ? "size=16M,lazy" : "size=16M");
  const uint64_t block = 64 << 10, size = 16 << 20;
  extent_map extents(size / block);
  stats counters;
  page_cache cache(*s, extents, counters, block, 8 * block);
  ck_assert_uint_eq(cache.line_count(), 8);
  if (lazy) cache.start_writeback();
  auto ch = s->open_channel();
  host_buffer buf(*s, 1 << 20);
  std::vector<uint8_t> shadow(size, 0);
  std::mt19937_64 rng(5 + _i);
  for (int i = 0; i < 5000; ++i) {
    uint64_t len = 1 + rng() % (rng() % 4 ? 3 * block : buf.len);
    uint64_t off = rng() % (size - len);
    unsigned op = rng() % 16;
    if (op < 8) {
      fill(buf.data, len, i);
      ck_assert_int_eq(cache.write(*ch, off, buf.data, len), 0);
      memcpy(&shadow[off], buf.data, len);
    } else if (op == 8) {
      ck_assert_int_eq(cache.discard(*ch, off, len), 0);
      memset(&shadow[off], 0, len);
    } else {
      ck_assert_int_eq(cache.read(*ch, off, buf.data, len), 0);
      ck_assert_msg(memcmp(buf.data, &shadow[off], len) == 0, "op %d: read at %llu differs", i,
                    (unsigned long long)off);
    }
  }
  if (lazy) cache.stop_writeback();
  ck_assert_int_eq(cache.flush(*ch), 0);
  ck_assert_uint_eq(cache.dirty_lines(), 0);
  // After the flush VRAM itself holds every byte: read it past the cache.
  for (uint64_t b = 0; b < size / block; ++b) {
    if (!extents.has_data(b)) {
      ck_assert_msg(all_zero(&shadow[b * block], block), "block %llu lost its data",
                    (unsigned long long)b);
      continue;
    }
    ck_assert_int_eq(copy_out(*s, *ch, b * block, buf.data, block), 0);
    ck_assert_msg(memcmp(buf.data, &shadow[b * block], block) == 0, "block %llu differs in VRAM",
                  (unsigned long long)b);
  }
  ck_assert_uint_gt(counters.total(&stats::shard::flushes), 1000);
  if (lazy) {
    ck_assert_uint_le(s->held_bytes(), size);
    printf("lazy page cache: %llu blocks hold data, %llu MiB of VRAM held\n",
           (unsigned long long)extents.blocks_with_data(),
           (unsigned long long)(s->held_bytes() >> 20));
  }
}
END_TEST


// The copy engine against the DMA engines, byte for byte: small pieces at
// every alignment (odd offsets and lengths, unaligned sector runs) go to
// the engine, whole ranges to DMA; each reads what the other wrote.
START_TEST(engine_matches_dma) {
  auto s = must_make_store("size=64M");
  ck_assert(s->copy_path() == "engine");
  auto ch = s->open_channel();
  const size_t region = 1 << 20;
  host_buffer whole(*s, region), pieces(*s, region), back(*s, region);
  std::mt19937_64 rng(42);
  for (int round = 0; round < 2; ++round) {
    uint64_t base = uint64_t(round) * 8 * region + 12345 * round;
    // Engine writes, DMA reads.
    fill(pieces.data, region, 7 + round);
    for (size_t at = 0; at < region;) {
      size_t len = std::min<size_t>(region - at, 1 + rng() % (rng() % 2 ? 64 : 16384));
      ck_assert_int_eq(s->submit_write(*ch, base + at, pieces.data + at, len), 0);
      at += len;
      if (rng() % 4 == 0) ck_assert_int_eq(s->wait(*ch), 0);
    }
    ck_assert_int_eq(s->wait(*ch), 0);
    ck_assert_int_eq(copy_out(*s, *ch, base, whole.data, region), 0);
    ck_assert_msg(memcmp(whole.data, pieces.data, region) == 0, "DMA read of engine writes differs");
    // DMA writes, engine reads: sector runs (4 KiB multiples at 4 KiB
    // offsets) and ragged pieces.
    fill(whole.data, region, 70 + round);
    ck_assert_int_eq(copy_in(*s, *ch, base, whole.data, region), 0);
    memset(back.data, 0xAB, region);
    for (size_t at = 0; at < region;) {
      size_t len = rng() % 2 ? 4096 * (1 + rng() % 4) : 1 + rng() % 5000;
      len = std::min(len, region - at);
      ck_assert_int_eq(s->submit_read(*ch, base + at, back.data + at, len), 0);
      at += len;
      if (rng() % 3 == 0) ck_assert_int_eq(s->wait(*ch), 0);
    }
    ck_assert_int_eq(s->wait(*ch), 0);
    ck_assert_msg(memcmp(whole.data, back.data, region) == 0, "engine read of DMA writes differs");
  }
  copy_counts c = s->copies();
  printf("engine_matches_dma: %llu copies by the engine, %llu by DMA, %llu launch(es)\n",
         (unsigned long long)c.engine, (unsigned long long)c.dma, (unsigned long long)c.launches);
  ck_assert_uint_gt(c.engine, 500);
  ck_assert_uint_gt(c.dma, 0);
}
END_TEST

// Through the cache, a 4 KiB read that misses is one engine copy; a 1 MiB
// read that is not block-aligned ends in a small piece (4 KiB here), and
// every piece of it goes by DMA, so that a stream of large requests never
// keeps the engine's kernel polling across PCIe.
START_TEST(large_requests_copy_by_dma) {
  auto s = must_make_store("size=16M");
  const uint64_t block = 64 << 10;
  extent_map extents(uint64_t(16 << 20) / block);
  stats counters;
  page_cache cache(*s, extents, counters, block, 8 * block);
  auto ch = s->open_channel();
  host_buffer data(*s, 2 << 20), back(*s, 2 << 20);
  fill(data.data, data.len, 11);
  ck_assert_int_eq(cache.write(*ch, 0, data.data, data.len), 0);
  ck_assert_int_eq(cache.flush(*ch), 0);
  // New blocks take every line, so that the reads below miss.
  ck_assert_int_eq(cache.write(*ch, 8 << 20, data.data, 8 * block), 0);
  // A small read launches the engine (its own copy goes by DMA meanwhile);
  // the next one is the engine's.
  ck_assert_int_eq(cache.read(*ch, 2 * block, back.data, 4096), 0);
  copy_counts before = s->copies();
  ck_assert_int_eq(cache.read(*ch, 3 * block, back.data, 4096), 0);
  ck_assert_uint_eq(s->copies().engine, before.engine + 1);
  before = s->copies();
  const uint64_t at = 5 * block + 4096;  // 60 KiB of block 5 first, 4 KiB of block 21 last
  ck_assert_int_eq(cache.read(*ch, at, back.data, 1 << 20), 0);
  ck_assert(memcmp(back.data, data.data + at, 1 << 20) == 0);
  copy_counts after = s->copies();
  ck_assert_uint_eq(after.engine, before.engine);
  ck_assert_uint_eq(after.dma - before.dma, 17);  // 15 whole blocks and the two end pieces
  ck_assert_uint_eq(ch->request_bytes, 0);       // the request is over
  ck_assert_int_eq(cache.read(*ch, 22 * block, back.data, 4096), 0);
  ck_assert(memcmp(back.data, data.data + 22 * block, 4096) == 0);
  ck_assert_uint_eq(s->copies().engine, after.engine + 1);
  ck_assert_uint_eq(s->copies().dma, after.dma);
}
END_TEST

// Latency of one copy plus its wait, engine against DMA, by size and
// direction: what sets copy_engine_max_from_vram and _to_vram.
START_TEST(engine_and_dma_latency) {
  auto engine = must_make_store("size=64M");
  auto dma = must_make_store("size=64M,copy_engine=off");
  ck_assert(dma->copy_path() == "dma");
  for (block_store *st : {engine.get(), dma.get()}) {
    auto ch = st->open_channel();
    host_buffer buf(*st, 1 << 20);
    fill(buf.data, buf.len, 3);
    for (size_t size : {size_t(4096), size_t(16384), size_t(65536), size_t(262144), size_t(1 << 20)}) {
      double us[2];
      for (int dir = 0; dir < 2; ++dir) {
        std::vector<double> t;
        for (int i = 0; i < 1000; ++i) {
          uint64_t off = uint64_t(i % 32) * (1 << 20);
          auto t0 = std::chrono::steady_clock::now();
          int err = dir ? copy_out(*st, *ch, off, buf.data, size) : copy_in(*st, *ch, off, buf.data, size);
          t.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
          ck_assert_int_eq(err, 0);
        }
        std::sort(t.begin(), t.end());
        us[dir] = t[t.size() / 2];
      }
      printf("%s: %7zu bytes: to VRAM p50 %.2f us, from VRAM p50 %.2f us\n",
             st == engine.get() ? "engine path" : "DMA only   ", size, us[0], us[1]);
    }
  }
}
END_TEST

// The kernel parks when idle (an idle GPU runs nothing) and the next copy
// launches it again.
START_TEST(engine_parks_and_relaunches) {
  auto s = must_make_store("size=64M");
  auto ch = s->open_channel();
  host_buffer buf(*s, 4096);
  fill(buf.data, 4096, 9);
  ck_assert_int_eq(copy_in(*s, *ch, 0, buf.data, 4096), 0);
  ck_assert_uint_eq(s->copies().launches, 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto t0 = std::chrono::steady_clock::now();
  ck_assert_int_eq(copy_out(*s, *ch, 0, buf.data, 4096), 0);
  double first = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
  ck_assert_uint_eq(s->copies().launches, 2);
  t0 = std::chrono::steady_clock::now();
  ck_assert_int_eq(copy_out(*s, *ch, 0, buf.data, 4096), 0);
  double next = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
  printf("engine: first 4 KiB copy after parking %.1f us (relaunch), the next %.1f us\n", first, next);
  ck_assert_uint_eq(s->copies().launches, 2);
}
END_TEST

// A wait that outlives copy_timeout fails the store, within copy_timeout.
START_TEST(a_stalled_copy_fails_the_store) {
  auto s = must_make_faulty_store("size=64M");
  s->set_copy_timeout(std::chrono::milliseconds(300));
  auto ch = s->open_channel();
  host_buffer buf(*s, 4096);
  ck_assert_int_eq(copy_in(*s, *ch, 0, buf.data, 4096), 0);  // the engine is running
  ck_assert(!fault_injection::configure("stall:1"));
  auto t0 = std::chrono::steady_clock::now();
  ck_assert_int_eq(copy_out(*s, *ch, 0, buf.data, 4096), -EIO);
  double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ck_assert_msg(waited >= 0.29 && waited < 2, "the stalled copy failed after %.2f s", waited);
  ck_assert(s->failed());
  ck_assert_int_eq(s->submit_read(*ch, 0, buf.data, 4096), -EIO);
}
END_TEST

// A real deadline, no injection: a copy still running when copy_timeout
// (here 0) has passed fails the store at once, and the driver is left
// alone from then on.  64 MiB take the DMA engines milliseconds.
START_TEST(a_copy_past_its_deadline_fails_the_store) {
  auto s = must_make_store("size=64M");
  s->set_copy_timeout(std::chrono::milliseconds(0));
  auto ch = s->open_channel();
  {
    host_buffer buf(*s, 64 << 20);
    ck_assert_int_eq(copy_out(*s, *ch, 0, buf.data, 64 << 20), -EIO);
    ck_assert(s->failed());
    ck_assert_int_eq(s->submit_read(*ch, 0, buf.data, 4096), -EIO);
    // The copy still lands: the buffer is freed once it has.
    ck_assert_int_eq(cudaDeviceSynchronize(), cudaSuccess);
  }
}
END_TEST

// A GPU where the engine cannot start: the DMA engines serve, every byte.
START_TEST(engine_launch_failure_falls_back_to_dma) {
  auto s = must_make_store("size=64M", refused_launch);
  auto ch = s->open_channel();
  host_buffer in(*s, 65536), out(*s, 65536);
  fill(in.data, 65536, 11);
  for (size_t at = 0; at < 65536; at += 4096)
    ck_assert_int_eq(copy_in(*s, *ch, at, in.data + at, 4096), 0);
  for (size_t at = 0; at < 65536; at += 4096)
    ck_assert_int_eq(copy_out(*s, *ch, at, out.data + at, 4096), 0);
  ck_assert(memcmp(in.data, out.data, 65536) == 0);
  ck_assert_uint_eq(s->copies().engine, 0);
  ck_assert_uint_ge(s->copies().dma, 32);
  ck_assert(!s->failed());
}
END_TEST

Suite *make_suite() {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    printf("SKIP: no CUDA device: %s\n",
           err != cudaSuccess ? cudaGetErrorString(err) : "none found");
    exit(77);
  }
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess)
    printf("cuda store tests on GPU 0 of %d: %s\n", count, prop.name);
  check_fork_mode = false;  // CUDA has started in this process
  Suite *s = suite_create("cuda_store");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 120);
  tcase_add_checked_fixture(tc, reset_faults, reset_faults);
  tcase_add_test(tc, reserved_round_trip);
  tcase_add_test(tc, parallel_channels);
  tcase_add_test(tc, lazy_backs_and_gives_back);
  tcase_add_test(tc, lazy_backing_from_many_threads);
  tcase_add_test(tc, lazy_allocation_failure_is_enospc);
  tcase_add_test(tc, bad_devices_and_sizes);
  tcase_add_test(tc, device_by_index_bus_id_and_uuid);
  tcase_add_test(tc, uuid_text_is_what_nvidia_smi_prints);
  tcase_add_test(tc, sizes_from_free_and_total_vram);
  tcase_add_test(tc, injected_copy_failure);
  tcase_add_test(tc, injected_device_loss);
  tcase_add_loop_test(tc, page_cache_over_vram, 0, 2);
  tcase_add_test(tc, engine_matches_dma);
  tcase_add_test(tc, large_requests_copy_by_dma);
  tcase_add_test(tc, engine_and_dma_latency);
  tcase_add_test(tc, engine_parks_and_relaunches);
  tcase_add_test(tc, a_stalled_copy_fails_the_store);
  tcase_add_test(tc, a_copy_past_its_deadline_fails_the_store);
  tcase_add_test(tc, engine_launch_failure_falls_back_to_dma);
  suite_add_tcase(s, tc);
  return s;
}
