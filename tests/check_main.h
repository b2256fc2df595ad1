// The main() every Check suite shares: each test file defines make_suite().
#pragma once

#include <check.h>

#include <cstdlib>

Suite *make_suite();

int main() {
  SRunner *runner = srunner_create(make_suite());
  // Fork mode: a crash fails one test, not the suite.
  srunner_set_fork_status(runner, CK_FORK);
  srunner_run_all(runner, CK_NORMAL);
  int failed = srunner_ntests_failed(runner);
  srunner_free(runner);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
