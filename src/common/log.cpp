#include "common/log.h"

#include "common/monotonic_clock.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <algorithm>

namespace vramfs {
namespace {

enum class sink { stderr_stream, syslog, kmsg };
sink destination = sink::stderr_stream;
int kmsg_fd = -1;
bool verbose = false;

// The syslog socket, written without ever blocking: a logger that waits
// for memory (swapped out to this very mount) must never hold up a thread
// that logs, which may hold a cache set's lock.  A message that does not
// fit is dropped and counted; the next one that goes out says so.
int syslog_fd = -1;
std::atomic<uint64_t> syslog_dropped{0};

void connect_syslog() {
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  strcpy(addr.sun_path, "/dev/log");
  if (connect(fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0) {
    close(fd);
    return;
  }
  int old = syslog_fd;
  syslog_fd = fd;
  if (old >= 0) close(old);
}

void send_syslog(int priority, const char *text) {
  char line[1100];
  time_t now = time(nullptr);
  tm local;
  localtime_r(&now, &local);
  char stamp[32];
  strftime(stamp, sizeof stamp, "%b %e %H:%M:%S", &local);
  uint64_t dropped = syslog_dropped.exchange(0);
  int n = dropped ? snprintf(line, sizeof line, "<%d>%s vramfs[%d]: %s (%llu log messages dropped)",
                             LOG_DAEMON | priority, stamp, int(getpid()), text,
                             (unsigned long long)dropped)
                  : snprintf(line, sizeof line, "<%d>%s vramfs[%d]: %s", LOG_DAEMON | priority,
                             stamp, int(getpid()), text);
  size_t len = std::min(size_t(n), sizeof line - 1);
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (syslog_fd >= 0 && send(syslog_fd, line, len, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0) return;
    // The logger restarted (its socket is new): connect again, once.
    if (syslog_fd < 0 || errno == ECONNREFUSED || errno == ENOTCONN)
      connect_syslog();
    else
      break;
  }
  syslog_dropped.fetch_add(dropped + 1);
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
  connect_syslog();
  destination = sink::syslog;
}

void log_set_verbose(bool debug) { verbose = debug; }
bool log_is_debug() { return verbose; }

void log_message(log_level level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  static const int priority[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
  if (destination == sink::syslog) {
    char text[1024];
    vsnprintf(text, sizeof text, fmt, ap);
    send_syslog(priority[int(level)], text);
  } else if (destination == sink::kmsg) {
    // "<priority>tag[pid]: text\n", one write per line: without the
    // newline the kernel holds the record until something else logs.
    char line[1024];
    int n = snprintf(line, sizeof line, "<%d>vramfs[%d]: ", LOG_DAEMON | priority[int(level)],
                     int(getpid()));
    vsnprintf(line + n, sizeof line - size_t(n) - 1, fmt, ap);
    size_t len = strlen(line);
    line[len++] = '\n';
    if (write(kmsg_fd, line, len) < 0) { /* nowhere else to say it */ }
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
  auto now = int64_t(monotonic_ns());
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
