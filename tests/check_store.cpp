// Unit tests: the host store, its fault-injecting decorator, the copy
// engine's policy.
#include "common/fault_injection.h"
#include "store/copy_engine_policy.h"
#include "store/host_store.h"
#include "faulty_host_store.h"
#include "store_copy.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <vector>

// Last: check.h defines macros (fail) that clash with the C++ library.
#include "check_main.h"

using namespace vramfs;

namespace {
constexpr uint64_t chunk = host_store::chunk_bytes;

}  // namespace

START_TEST(reserved_round_trip) {
  host_store s(3 * chunk, false);
  ck_assert_uint_eq(s.held_bytes(), 3 * chunk);
  auto ch = s.open_channel();
  std::vector<uint8_t> in(chunk + 100), out(chunk + 100);
  for (size_t i = 0; i < in.size(); ++i) in[i] = uint8_t(i * 13);
  // Across a chunk boundary.
  ck_assert_int_eq(copy_in(s, *ch, chunk - 50, in.data(), in.size()), 0);
  ck_assert_int_eq(copy_out(s, *ch, chunk - 50, out.data(), out.size()), 0);
  ck_assert(in == out);
  ck_assert_int_eq(s.submit_read(*ch, 3 * chunk - 10, out.data(), 11), -EINVAL);
}
END_TEST

START_TEST(lazy_backs_and_releases_whole_chunks) {
  host_store s(4 * chunk, true);
  ck_assert_uint_eq(s.held_bytes(), 0);
  auto ch = s.open_channel();
  uint8_t byte = 7;
  ck_assert_int_eq(copy_in(s, *ch, chunk, &byte, 1), -EIO);  // not backed: refused, not lost
  ck_assert_int_eq(s.ensure_backed(chunk + 10, 2), 0);
  ck_assert_uint_eq(s.held_bytes(), chunk);
  ck_assert_int_eq(copy_in(s, *ch, chunk + 10, &byte, 1), 0);
  ck_assert_int_eq(s.ensure_backed(chunk - 1, 2), 0);  // spans chunks 0 and 1
  ck_assert_uint_eq(s.held_bytes(), 2 * chunk);
  s.release(chunk, chunk);
  ck_assert_uint_eq(s.held_bytes(), chunk);
  uint8_t out = 1;
  ck_assert_int_eq(copy_out(s, *ch, chunk + 10, &out, 1), 0);
  ck_assert_uint_eq(out, 0);  // released memory reads as zeros
}
END_TEST

START_TEST(injected_faults) {
  faulty_host_store s(chunk, true);
  auto ch = s.open_channel();
  uint8_t buf[16] = {};
  ck_assert(!fault_injection::configure("alloc:1,copy:2"));
  ck_assert_int_eq(s.ensure_backed(0, 16), -ENOSPC);
  ck_assert_uint_eq(s.held_bytes(), 0);
  ck_assert_int_eq(s.ensure_backed(0, 16), 0);
  ck_assert_int_eq(copy_in(s, *ch, 0, buf, 16), 0);
  ck_assert_int_eq(copy_in(s, *ch, 0, buf, 16), -EIO);
  ck_assert_int_eq(copy_in(s, *ch, 0, buf, 16), 0);
  ck_assert(!fault_injection::configure("sticky:1"));
  ck_assert_int_eq(copy_out(s, *ch, 0, buf, 16), -EIO);
  ck_assert_int_eq(copy_out(s, *ch, 0, buf, 16), -EIO);  // and from then on
  ck_assert(fault_injection::configure("copy:x"));
  ck_assert(fault_injection::configure("bogus:1"));
}
END_TEST

// The copy engine's policy, from the facts the GPU reports: a display's
// watchdog (a kernel run-time limit), pinned memory the GPU cannot reach at
// its host address, or an old GPU each keep it off, saying why.
// Request buffers are resident from the start, even without mlockall (as
// in these tests and the sanitizer build): the kernel ends with EIO a
// request whose copy into the buffer faults while the server is killed.
START_TEST(host_buffers_are_populated) {
  host_store s(chunk, false);
  size_t bytes = (1 << 20) + 8192;
  void *p = s.alloc_host(bytes);
  long page = sysconf(_SC_PAGESIZE);
  std::vector<unsigned char> resident((bytes + page - 1) / page);
  ck_assert_int_eq(mincore(p, bytes, resident.data()), 0);
  size_t missing = 0;
  for (unsigned char r : resident) missing += !(r & 1);
  ck_assert_uint_eq(missing, 0);
  s.free_host(p, bytes);
}
END_TEST

START_TEST(copy_engine_policy) {
  gpu_facts usable{.kernel_exec_timeout = false, .host_pointers_usable = true, .compute_major = 9};
  ck_assert(!copy_engine_unusable(usable));
  gpu_facts watchdog = usable;
  watchdog.kernel_exec_timeout = true;
  auto why = copy_engine_unusable(watchdog);
  ck_assert(why && why->find("run-time limit") != std::string::npos);
  gpu_facts no_host_pointers = usable;
  no_host_pointers.host_pointers_usable = false;
  ck_assert(copy_engine_unusable(no_host_pointers));
  gpu_facts old = usable;
  old.compute_major = 6;
  why = copy_engine_unusable(old);
  ck_assert(why && why->find("7.0") != std::string::npos);
}
END_TEST

Suite *make_suite() {
  Suite *s = suite_create("host_store");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, reserved_round_trip);
  tcase_add_test(tc, lazy_backs_and_releases_whole_chunks);
  tcase_add_test(tc, injected_faults);
  tcase_add_test(tc, host_buffers_are_populated);
  tcase_add_test(tc, copy_engine_policy);
  suite_add_tcase(s, tc);
  return s;
}
