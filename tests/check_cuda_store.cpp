// Unit tests: the cuda store, and the page cache over it.  Skipped (77)
// where no GPU is usable.
#include "block_store.h"
#include "cuda_store.h"
#include "extent_map.h"
#include "fault_injection.h"
#include "options.h"
#include "page_cache.h"
#include "stats.h"

#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

// Last: check.h defines macros (fail) that clash with the C++ library.
#include "check_main.h"

using namespace vramfs;

namespace {

std::unique_ptr<block_store> make_store(const char *opts_text, std::string *error) {
  options o;
  std::vector<const char *> args = {"vramfs", "/mnt", "-o", opts_text};
  auto err = parse_command_line(int(args.size()), args.data(), &o);
  ck_assert_msg(!err, "%s", err ? err->c_str() : "");
  return create_cuda_store(o, error);
}

std::unique_ptr<block_store> must_make_store(const char *opts_text) {
  std::string error;
  auto store = make_store(opts_text, &error);
  ck_assert_msg(store, "%s: %s", opts_text, error.c_str());
  return store;
}

int copy_in(block_store &s, store_channel &ch, uint64_t off, const void *src, size_t len) {
  int err = s.submit_write(ch, off, src, len);
  return err ? err : s.wait(ch);
}
int copy_out(block_store &s, store_channel &ch, uint64_t off, void *dst, size_t len) {
  int err = s.submit_read(ch, off, dst, len);
  return err ? err : s.wait(ch);
}

size_t free_vram() {
  size_t free_bytes = 0, total = 0;
  cudaMemGetInfo(&free_bytes, &total);
  return free_bytes;
}

}  // namespace

START_TEST(reserved_round_trip) {
  auto s = must_make_store("size=64M");
  ck_assert_str_eq(s->backend(), "cuda");
  ck_assert_uint_ge(s->held_bytes(), 64 << 20);
  auto ch = s->open_channel();
  const size_t len = 3 * 1024 * 1024 + 1234;
  auto *in = static_cast<uint8_t *>(s->alloc_host(len));
  auto *out = static_cast<uint8_t *>(s->alloc_host(len));
  for (size_t i = 0; i < len; ++i) in[i] = uint8_t(i * 7 + (i >> 12));
  // Odd offsets and lengths, across the 2 MiB boundaries.
  ck_assert_int_eq(copy_in(*s, *ch, (2 << 20) - 777, in, len), 0);
  memset(out, 0, len);
  ck_assert_int_eq(copy_out(*s, *ch, (2 << 20) - 777, out, len), 0);
  ck_assert(memcmp(in, out, len) == 0);
  ck_assert_int_eq(s->submit_read(*ch, (64 << 20) - 10, out, 11), -EINVAL);
  s->free_host(in, len);
  s->free_host(out, len);
}
END_TEST

START_TEST(lazy_gives_vram_back) {
  auto s = must_make_store("size=1G,lazy");
  ck_assert_uint_eq(s->held_bytes(), 0);
  uint64_t chunk = s->chunk_size();
  size_t before = free_vram();
  ck_assert_int_eq(s->ensure_backed(0, 256 << 20), 0);
  ck_assert_uint_eq(s->held_bytes(), 256 << 20);
  size_t during = free_vram();
  ck_assert_uint_ge(before - during, (256 << 20) - chunk);
  auto ch = s->open_channel();
  uint64_t value = 0x1234567890abcdefull, back = 0;
  ck_assert_int_eq(copy_in(*s, *ch, (128 << 20) + 8, &value, 8), 0);
  ck_assert_int_eq(copy_out(*s, *ch, (128 << 20) + 8, &back, 8), 0);
  ck_assert_uint_eq(back, value);
  s->release(0, 256 << 20);
  ck_assert_uint_eq(s->held_bytes(), 0);
  ck_assert_uint_ge(free_vram(), during + (256 << 20) - chunk);
}
END_TEST

START_TEST(bad_devices_and_sizes) {
  std::string error;
  ck_assert(!make_store("size=64M,device=99", &error));
  ck_assert_msg(error.find("there is no GPU 99") != std::string::npos, "%s", error.c_str());
  ck_assert(!make_store("size=64M,device=0000:ff:1f.7", &error));
  ck_assert_msg(error.find("PCI bus id") != std::string::npos, "%s", error.c_str());
  ck_assert(!make_store("size=64M,device=GPU-nonsense", &error));
  ck_assert_msg(error.find("not a GPU index") != std::string::npos, "%s", error.c_str());
  ck_assert(!make_store("size=64T", &error));
  ck_assert_msg(error.find("is larger than the") != std::string::npos &&
                    error.find("free VRAM on GPU 0") != std::string::npos,
                "%s", error.c_str());
}
END_TEST

START_TEST(device_by_bus_id_and_uuid) {
  char bus[32];
  ck_assert_int_eq(cudaDeviceGetPCIBusId(bus, sizeof bus, 0), cudaSuccess);
  std::string opt = std::string("size=64M,device=") + bus;
  auto s = must_make_store(opt.c_str());
  ck_assert_msg(s->device().find(bus) != std::string::npos, "%s", s->device().c_str());
  cudaDeviceProp prop;
  ck_assert_int_eq(cudaGetDeviceProperties(&prop, 0), cudaSuccess);
  const auto *b = reinterpret_cast<const unsigned char *>(prop.uuid.bytes);
  char uuid[64];
  snprintf(uuid, sizeof uuid,
           "size=64M,device=GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
           b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
           b[14], b[15]);
  must_make_store(uuid);
}
END_TEST

START_TEST(default_size_is_free_minus_reserve) {
  auto s = must_make_store("reserve=1G,lazy");
  size_t free_now = free_vram();
  ck_assert_uint_le(s->size(), free_now - (1ull << 30) + (64 << 20));
  ck_assert_uint_ge(s->size() + (1ull << 30) + (256 << 20), free_now);
}
END_TEST

START_TEST(injected_faults) {
  auto s = must_make_store("size=64M");
  auto ch = s->open_channel();
  auto *buf = static_cast<uint8_t *>(s->alloc_host(4096));
  ck_assert(!fault_injection::configure("copy:2"));
  ck_assert_int_eq(copy_in(*s, *ch, 0, buf, 4096), 0);
  ck_assert_int_eq(copy_in(*s, *ch, 0, buf, 4096), -EIO);
  ck_assert_int_eq(copy_in(*s, *ch, 0, buf, 4096), 0);
  ck_assert(!fault_injection::configure("sticky:1"));
  ck_assert_int_eq(copy_out(*s, *ch, 0, buf, 4096), -EIO);
  for (int i = 0; i < 1000; ++i) ck_assert_int_eq(copy_out(*s, *ch, 0, buf, 4096), -EIO);
  ck_assert(!fault_injection::configure(""));
  s->free_host(buf, 4096);
}
END_TEST

START_TEST(page_cache_over_vram) {
  // 64 MiB of 64 KiB blocks through a 1 MiB cache: every block is evicted
  // and fetched back many times; each read is checked against a reference.
  auto s = must_make_store("size=64M,lazy");
  const uint64_t block = 64 << 10, size = 64 << 20;
  extent_map extents(size / block);
  stats counters;
  page_cache cache(*s, extents, counters, block, 1 << 20);
  auto ch = s->open_channel();
  std::vector<uint8_t> shadow(size, 0), buf(1 << 20);
  std::mt19937_64 rng(5);
  for (int i = 0; i < 4000; ++i) {
    uint64_t len = 1 + rng() % buf.size(), off = rng() % (size - len);
    if (rng() % 2) {
      for (uint64_t k = 0; k < len; ++k) buf[k] = uint8_t(rng());
      ck_assert_int_eq(cache.write(*ch, off, buf.data(), len), 0);
      memcpy(&shadow[off], buf.data(), len);
    } else if (rng() % 8 == 0) {
      ck_assert_int_eq(cache.discard(*ch, off, len), 0);
      memset(&shadow[off], 0, len);
    } else {
      ck_assert_int_eq(cache.read(*ch, off, buf.data(), len), 0);
      ck_assert(memcmp(buf.data(), &shadow[off], len) == 0);
    }
  }
  ck_assert_int_eq(cache.flush(*ch), 0);
  for (uint64_t off = 0; off < size; off += buf.size()) {
    ck_assert_int_eq(cache.read(*ch, off, buf.data(), buf.size()), 0);
    ck_assert(memcmp(buf.data(), &shadow[off], buf.size()) == 0);
  }
  ck_assert_uint_gt(counters.flushes.load(), 0);
}
END_TEST

Suite *make_suite() {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    printf("SKIP: no CUDA device: %s\n", err != cudaSuccess ? cudaGetErrorString(err) : "none found");
    exit(77);
  }
  check_fork_mode = false;  // CUDA has started in this process
  Suite *s = suite_create("cuda_store");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, reserved_round_trip);
  tcase_add_test(tc, lazy_gives_vram_back);
  tcase_add_test(tc, bad_devices_and_sizes);
  tcase_add_test(tc, device_by_bus_id_and_uuid);
  tcase_add_test(tc, default_size_is_free_minus_reserve);
  tcase_add_test(tc, injected_faults);
  tcase_add_test(tc, page_cache_over_vram);
  suite_add_tcase(s, tc);
  return s;
}
