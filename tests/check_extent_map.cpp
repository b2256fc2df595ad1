// Unit tests: the map of blocks that hold data.
#include "cache/extent_map.h"

// Last: check.h defines macros (fail) that clash with the C++ library.
#include "check_main.h"

using namespace vramfs;

START_TEST(starts_empty) {
  extent_map m(1000);
  ck_assert_uint_eq(m.blocks_with_data(), 0);
  ck_assert(m.range_unused(0, 1000));
  for (uint64_t b = 0; b < 1000; ++b) ck_assert(!m.has_data(b));
}
END_TEST

START_TEST(set_and_clear_count_once) {
  extent_map m(130);
  ck_assert(m.set(5));
  ck_assert(!m.set(5));
  ck_assert(m.set(129));
  ck_assert_uint_eq(m.blocks_with_data(), 2);
  ck_assert(m.has_data(5) && m.has_data(129) && !m.has_data(6));
  ck_assert(m.clear(5));
  ck_assert(!m.clear(5));
  ck_assert_uint_eq(m.blocks_with_data(), 1);
}
END_TEST

START_TEST(range_unused_at_word_edges) {
  extent_map m(256);
  m.set(64);
  ck_assert(m.range_unused(0, 64));
  ck_assert(!m.range_unused(0, 65));
  ck_assert(!m.range_unused(64, 1));
  ck_assert(m.range_unused(65, 191));
  ck_assert(!m.range_unused(60, 10));
  m.clear(64);
  m.set(255);
  ck_assert(m.range_unused(0, 255));
  ck_assert(!m.range_unused(128, 128));
  ck_assert(!m.range_unused(200, 1000));  // clipped at the end
}
END_TEST

START_TEST(preallocated_blocks_keep_a_range_in_use) {
  extent_map m(200);
  m.set_preallocated(70);
  ck_assert(!m.has_data(70));  // reads as zeros
  ck_assert_uint_eq(m.blocks_with_data(), 0);
  ck_assert(!m.range_unused(64, 64));
  ck_assert(m.range_unused(0, 64));
  m.clear(70);  // a discard drops the reservation too
  ck_assert(m.range_unused(64, 64));
}
END_TEST

START_TEST(next_data_and_hole_for_lseek) {
  extent_map m(300);
  ck_assert_uint_eq(m.next_with_data(0), 300);
  ck_assert_uint_eq(m.next_without_data(0), 0);
  for (uint64_t b = 60; b < 130; ++b) m.set(b);
  m.set(299);
  ck_assert_uint_eq(m.next_with_data(0), 60);
  ck_assert_uint_eq(m.next_with_data(60), 60);
  ck_assert_uint_eq(m.next_with_data(130), 299);
  ck_assert_uint_eq(m.next_without_data(60), 130);
  ck_assert_uint_eq(m.next_without_data(64), 130);
  ck_assert_uint_eq(m.next_without_data(299), 300);
  ck_assert_uint_eq(m.next_with_data(300), 300);
  m.set_preallocated(200);  // not data: SEEK_DATA skips it
  ck_assert_uint_eq(m.next_with_data(131), 299);
}
END_TEST

Suite *make_suite() {
  Suite *s = suite_create("extent_map");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, starts_empty);
  tcase_add_test(tc, set_and_clear_count_once);
  tcase_add_test(tc, range_unused_at_word_edges);
  tcase_add_test(tc, preallocated_blocks_keep_a_range_in_use);
  tcase_add_test(tc, next_data_and_hole_for_lseek);
  suite_add_tcase(s, tc);
  return s;
}
