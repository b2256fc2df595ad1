// The main() every Check suite shares: each test file defines make_suite().
#pragma once

#include <check.h>

#include <cstdlib>

Suite *make_suite();

// A suite may turn fork mode off in make_suite(): CUDA cannot be used in a
// child forked after the parent started it.
inline bool check_fork_mode = true;

int main() {
  SRunner *runner = srunner_create(make_suite());
  // Fork mode: a crash fails one test, not the suite.
  srunner_set_fork_status(runner, check_fork_mode ? CK_FORK : CK_NOFORK);
  srunner_run_all(runner, CK_NORMAL);
  int failed = srunner_ntests_failed(runner);
  srunner_free(runner);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
