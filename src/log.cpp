#include "log.h"

#include <syslog.h>
#include <time.h>

#include <cstdarg>
#include <cstdio>

namespace vramfs {
namespace {

bool use_syslog = false;
bool verbose = false;

int64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

}  // namespace

void log_to_syslog(bool enable) {
  if (enable && !use_syslog) openlog("vramfs", LOG_PID, LOG_DAEMON);
  use_syslog = enable;
}

void log_set_verbose(bool debug) { verbose = debug; }
bool log_is_debug() { return verbose; }

void log_message(log_level level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (use_syslog) {
    static const int priority[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
    vsyslog(priority[int(level)], fmt, ap);
  } else {
    // One fprintf per line keeps lines from different threads whole.
    char line[1024];
    vsnprintf(line, sizeof line, fmt, ap);
    static const char *const prefix[] = {"error: ", "warning: ", "", "debug: "};
    fprintf(stderr, "vramfs: %s%s\n", prefix[int(level)], line);
  }
  va_end(ap);
}

bool log_rate_limit::allow(uint64_t *suppressed) {
  constexpr int64_t window_ns = 5'000'000'000;  // 5 s
  constexpr uint32_t burst = 5;
  int64_t now = now_ns();
  int64_t start = window_start_ns_.load(std::memory_order_relaxed);
  if (now - start > window_ns &&
      window_start_ns_.compare_exchange_strong(start, now)) {
    in_window_.store(0, std::memory_order_relaxed);
  }
  if (in_window_.fetch_add(1, std::memory_order_relaxed) < burst) {
    *suppressed = dropped_.exchange(0, std::memory_order_relaxed);
    return true;
  }
  dropped_.fetch_add(1, std::memory_order_relaxed);
  return false;
}

}  // namespace vramfs
