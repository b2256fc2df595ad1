// Leveled logging: stderr while in the foreground, syslog once daemonized,
// or the kernel log (/dev/kmsg) where there is no syslog socket.
#pragma once

#include <atomic>
#include <cstdint>

namespace vramfs {

enum class log_level { error, warning, info, debug };

// Where messages go; set once at startup before any worker exists.
void log_to_syslog(bool enable);
void log_set_verbose(bool debug);
bool log_is_debug();

void log_message(log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

// Lets through at most a few messages per interval from one call site, so a
// failing device cannot flood the log or stall the I/O path on syslog.
class log_rate_limit {
 public:
  // True when this message may be logged; *suppressed receives how many
  // were dropped since the last one that was.
  bool allow(uint64_t *suppressed);

 private:
  std::atomic<int64_t> window_start_ns_{0};
  std::atomic<uint32_t> in_window_{0};
  std::atomic<uint64_t> dropped_{0};
};

}  // namespace vramfs

#define log_err(...) ::vramfs::log_message(::vramfs::log_level::error, __VA_ARGS__)
#define log_warn(...) ::vramfs::log_message(::vramfs::log_level::warning, __VA_ARGS__)
#define log_info(...) ::vramfs::log_message(::vramfs::log_level::info, __VA_ARGS__)
#define log_debug(...)                                                     \
  do {                                                                     \
    if (::vramfs::log_is_debug())                                          \
      ::vramfs::log_message(::vramfs::log_level::debug, __VA_ARGS__);      \
  } while (0)

// Logs an error at most a few times a second from this call site.
#define log_err_limited(fmt, ...)                                          \
  do {                                                                     \
    static ::vramfs::log_rate_limit vramfs_rl_;                            \
    uint64_t vramfs_dropped_;                                              \
    if (vramfs_rl_.allow(&vramfs_dropped_))                                \
      ::vramfs::log_message(::vramfs::log_level::error,                    \
                            fmt " (%llu similar messages suppressed)",     \
                            ##__VA_ARGS__,                                 \
                            (unsigned long long)vramfs_dropped_);          \
  } while (0)
