// Command line and -o option parsing for vramfs.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace vramfs {

enum class backend_kind { cuda, host };
// How requests travel between the kernel and the daemon (fuse/transport.h).
enum class transport_kind { dev, uring };

// A size as the user wrote it: bytes, or a share of what the backend holds.
struct size_spec {
  uint64_t bytes = 0;
  unsigned percent = 0;  // 1..100 when the user wrote N%

  bool is_percent() const { return percent != 0; }
  // Bytes for this spec on a backend of the given capacity.
  uint64_t resolve(uint64_t capacity) const {
    return is_percent() ? uint64_t((unsigned __int128)capacity * percent / 100) : bytes;
  }
};

// Parses "4G", "512M", "1T", "4096", "50%" (when allow_percent).  Suffixes are
// binary (K = 1024) and may be followed by "B" or "iB".  Returns an error
// message, or std::nullopt on success.
std::optional<std::string> parse_size(const std::string &text, bool allow_percent,
                                      size_spec *out);

// Renders bytes as the largest exact unit: 4294967296 -> "4G".
std::string format_size(uint64_t bytes);

constexpr uint64_t KiB = 1024, MiB = KiB * 1024, GiB = MiB * 1024;

struct options {
  std::string source;      // what mount(8) passes first; informational
  std::string mountpoint;
  std::optional<size_spec> size;  // unset: the backend picks (cuda: free - reserve)
  // The most the data file may be truncated up to while mounted; unset:
  // the size.  The address range (and the failover state) is laid out for
  // it; memory is taken only for the size.
  std::optional<size_spec> max_size;
  size_spec reserve{512 * MiB, 0};
  bool reserve_given = false;
  backend_kind backend = default_backend();
  std::string device = "0";
  bool device_given = false;
  uint64_t cache = 64 * MiB;
  uint64_t block = 64 * KiB;
  // Enough threads for many faulting processes, few enough that a lone
  // one is answered from a warm thread: on the H100 machine 8 threads gave
  // the 8-thread swap workload 7% more than 4 and as much as 16, with the
  // same one-thread figure (docs/performance.md).
  unsigned threads = 8;
  bool threads_given = false;
  transport_kind transport = transport_kind::dev;
  // Entries per io_uring queue (one queue per possible CPU, each entry
  // with a 1 MiB buffer).
  unsigned queue_depth = 8;
  // queue_depth= or queue_threads= was given: both mean nothing to
  // transport=dev, which warns.
  bool uring_queue_given = false;
  // Threads (each with its own ring and queue_depth entries) per io_uring
  // queue: a request then waits for a GPU copy only on the thread that
  // took it, not in front of the others of its CPU.
  unsigned queue_threads = 1;
  // Seconds a copy to or from the GPU may take before the GPU counts as
  // stalled and every request fails (block_store::set_copy_timeout): far
  // beyond any working GPU's copy, and well under the kernel's 120 s
  // hung-task warning, so that a hung GPU shows as I/O errors, not a
  // machine frozen for good.
  unsigned copy_timeout = 30;
  // Small copies by a resident GPU kernel instead of the driver
  // (store/copy_engine.h), where the GPU allows it; off: DMA only.
  bool copy_engine = true;
  // Microseconds a serving thread of the dev transport keeps polling for
  // the next request after the last one, while no other thread serves
  // (fuse/request_poller.h); 0: it sleeps at once.  The default: 50 on
  // machines of 4 CPUs or more, where it took a lone swap-in from 40 to
  // 25 us on the H100 machine (docs/performance.md); 0 below, where no CPU
  // is spare to poll with.  Ignored over io_uring, where polling made a
  // lone swap-in slower.
  unsigned busy_poll_us = default_busy_poll_us();
  bool busy_poll_given = false;
  static unsigned default_busy_poll_us();
  // With failover: a second server started ahead of time, waiting to take
  // over at once (docs/design.md, "Failover").
  bool standby = true;
  bool standby_given = false;
  std::string name = "swapfile";
  bool lazy = false;
  // Crash survival: a keeper process holds the connection and the memory,
  // and replaces a server that dies (failover/keeper.h).
  bool failover = false;
  bool foreground = false;
  bool debug = false;
  bool show_help = false;
  bool show_version = false;
  // --stats-keys: print the keys of .stats (fuse/stats_text.h) and exit.
  bool show_stats_keys = false;
  // --check-options: check the command line as a mount would (every check
  // that needs neither the mount nor the GPU) and exit: 0, or 1 with the
  // refusal.  vramswap asks this instead of restating the rules.
  bool check_only = false;
  // --gpu-memory DEVICE: print the GPU's free and total memory in bytes
  // (common/gpu_memory.h) and exit; vramswap's elastic mode reads it.
  std::optional<std::string> gpu_memory_device;
  // --prepare-grow SIZE FILE: take the memory a grow of FILE (a mounted
  // data file) to SIZE needs, before the truncate (common/prepare_grow.h),
  // and exit; vramswap's resize runs it.
  std::optional<std::string> prepare_grow_file;
  uint64_t prepare_grow_size = 0;
  // Arguments left for libfuse (its own -o options such as allow_other).
  std::vector<std::string> fuse_args;

  static backend_kind default_backend();
};

constexpr uint64_t min_block = 4 * KiB, max_block = 16 * MiB;
constexpr uint64_t max_cache = 64 * GiB;
constexpr unsigned max_threads = 256;
constexpr unsigned max_queue_depth = 128;
constexpr unsigned max_queue_threads = 8;
constexpr unsigned max_copy_timeout = 3600;
constexpr unsigned max_busy_poll_us = 100000;

// Parses argv (argv[0] included).  Returns an error message for the user, or
// std::nullopt when *out is filled in and consistent.
std::optional<std::string> parse_command_line(int argc, const char *const *argv,
                                              options *out);

const char *backend_name(backend_kind kind);
// Why -o failover cannot go with the other options, or nullopt.
std::optional<std::string> failover_unsupported(const options &opts);
// What this build offers, for --version: "cuda host", "dev uring".
const char *available_backends();
const char *available_transports();
// Lines to warn about options that do nothing with the chosen backend.
std::vector<std::string> option_warnings(const options &opts);
// The largest useful cache for a file of `size` bytes: a cache is a power
// of two of at least 8 blocks, and lines beyond the file's size stay empty.
uint64_t cache_limit(uint64_t size, uint64_t block);
const char *transport_name(transport_kind kind);

// The --help text.
std::string usage_text(const char *program);

}  // namespace vramfs
