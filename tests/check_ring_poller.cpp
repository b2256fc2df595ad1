// Unit tests: when the uring transport's threads poll their rings between
// requests and when they sleep (fuse/ring_poller.h).  A thread that polls
// when it should sleep takes a CPU from the processes that fault; one that
// sleeps when it could poll costs a lone swap-in a wake-up.
#include "fuse/ring_poller.h"

#include <chrono>
#include <thread>

// Last: check.h defines macros (fail) that clash with the C++ library.
#include "check_main.h"

using vramfs::fuse::ring_poller;

namespace {

// Thread `me` answers a request, just now.
void one_request(ring_poller &p, unsigned me) {
  p.begin_request();
  p.end_request(me);
}

}  // namespace

START_TEST(busy_poll_0_never_polls) {
  ring_poller p(0);
  ck_assert(!p.enabled());
}
END_TEST

START_TEST(no_request_yet_means_sleep) {
  // A mount that has served nothing has no client to wait for.
  ring_poller p(50);
  ck_assert(p.enabled());
  ck_assert(!p.keep_polling(0));
  ck_assert(!p.keep_polling(1));
}
END_TEST

START_TEST(the_latest_requests_thread_polls_alone) {
  ring_poller p(1000000);  // 1 s: no deadline passes during the test
  one_request(p, 3);
  ck_assert(p.keep_polling(3));
  ck_assert(p.keep_polling(3));  // and goes on
  // The other idle threads sleep: one CPU at most polls per mount.
  ck_assert(!p.keep_polling(0));
  ck_assert(!p.keep_polling(4));
  // The next request landed on thread 0's ring: 0 leads, 3 stops.
  one_request(p, 0);
  ck_assert(p.keep_polling(0));
  ck_assert(!p.keep_polling(3));
}
END_TEST

START_TEST(nobody_polls_while_another_thread_serves) {
  ring_poller p(1000000);
  one_request(p, 1);
  ck_assert(p.keep_polling(1));
  // Load: another thread answers a request.  The poller gives way.
  p.begin_request();
  ck_assert(!p.keep_polling(1));
  ck_assert(!p.keep_polling(2));
  // That request done, its thread leads.
  p.end_request(2);
  ck_assert(p.keep_polling(2));
  ck_assert(!p.keep_polling(1));
}
END_TEST

START_TEST(polling_ends_busy_poll_after_the_last_request) {
  ring_poller p(2000);  // 2 ms
  one_request(p, 0);
  ck_assert(p.keep_polling(0));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ck_assert(!p.keep_polling(0));
  // A new request starts a new spell.
  one_request(p, 0);
  ck_assert(p.keep_polling(0));
}
END_TEST

Suite *make_suite() {
  Suite *s = suite_create("ring_poller");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, busy_poll_0_never_polls);
  tcase_add_test(tc, no_request_yet_means_sleep);
  tcase_add_test(tc, the_latest_requests_thread_polls_alone);
  tcase_add_test(tc, nobody_polls_while_another_thread_serves);
  tcase_add_test(tc, polling_ends_busy_poll_after_the_last_request);
  suite_add_tcase(s, tc);
  return s;
}
