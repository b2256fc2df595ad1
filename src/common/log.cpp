#include "common/log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstring>

namespace vramfs {
namespace {

enum class sink { stderr_stream, syslog, kmsg };
sink destination = sink::stderr_stream;
int kmsg_fd = -1;
bool verbose = false;

int64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

}  // namespace

void log_to_syslog(bool enable) {
  if (!enable) {
    destination = sink::stderr_stream;
    return;
  }
  // Without a syslog socket (a container, an initramfs, a minimal system)
  // messages would vanish while the docs point at the journal: the
  // kernel log takes them instead, where journald and dmesg find them.
  struct stat st;
  if (stat("/dev/log", &st) != 0 && kmsg_fd < 0)
    kmsg_fd = open("/dev/kmsg", O_WRONLY | O_CLOEXEC | O_NONBLOCK);
  if (kmsg_fd >= 0) {
    destination = sink::kmsg;
    return;
  }
  openlog("vramfs", LOG_PID, LOG_DAEMON);
  destination = sink::syslog;
}

void log_set_verbose(bool debug) { verbose = debug; }
bool log_is_debug() { return verbose; }

void log_message(log_level level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  static const int priority[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
  if (destination == sink::syslog) {
    vsyslog(priority[int(level)], fmt, ap);
  } else if (destination == sink::kmsg) {
    // "<priority>tag[pid]: text", one write per line.
    char line[1024];
    int n = snprintf(line, sizeof line, "<%d>vramfs[%d]: ", LOG_DAEMON | priority[int(level)],
                     int(getpid()));
    vsnprintf(line + n, sizeof line - size_t(n), fmt, ap);
    if (write(kmsg_fd, line, strlen(line)) < 0) { /* nowhere else to say it */ }
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
