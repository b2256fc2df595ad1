#include "common/options.h"

#include "config.h"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace vramfs {
namespace {

bool is_power_of_two(uint64_t v) { return v && !(v & (v - 1)); }

std::optional<std::string> parse_unsigned(const std::string &text, uint64_t *out) {
  if (text.empty() || text[0] < '0' || text[0] > '9') return "not a number";
  errno = 0;
  char *end;
  unsigned long long v = strtoull(text.c_str(), &end, 10);
  if (errno == ERANGE) return "too large";
  if (*end) return "not a number";
  *out = v;
  return std::nullopt;
}

// KEY=VALUE where VALUE counts something from 1 to max; `what` says what
// in the message ("a number", "a number of seconds").
std::optional<std::string> parse_count(const std::string &key, const std::string &value,
                                       uint64_t max, const char *what, unsigned *out) {
  uint64_t n;
  if (parse_unsigned(value, &n) || n < 1 || n > max)
    return "invalid " + key + "=" + value + ": must be " + what + " from 1 to " +
           std::to_string(max);
  *out = unsigned(n);
  return std::nullopt;
}

// Options of mount(8) and fstab that mean nothing to a FUSE filesystem and
// that mount.fuse3 may pass on; accepted and ignored, as other filesystems do.
bool is_ignored_mount_option(const std::string &key) {
  static const char *const ignored[] = {"defaults", "auto",  "noauto", "user",
                                        "nouser",   "users", "_netdev", "nofail",
                                        "rw"};
  for (const char *name : ignored)
    if (key == name) return true;
  return false;
}

std::string quoted(const std::string &s) { return "'" + s + "'"; }

std::optional<std::string> parse_power_of_two_size(const std::string &key,
                                                   const std::string &value,
                                                   uint64_t min, uint64_t max,
                                                   uint64_t *out) {
  size_spec spec;
  if (auto err = parse_size(value, false, &spec))
    return "invalid " + key + "=" + value + ": " + *err;
  if (!is_power_of_two(spec.bytes))
    return "invalid " + key + "=" + value + ": must be a power of two";
  if (spec.bytes < min || spec.bytes > max)
    return "invalid " + key + "=" + value + ": must be between " + format_size(min) +
           " and " + format_size(max);
  *out = spec.bytes;
  return std::nullopt;
}

// Applies one key[=value] from a -o list.  Unknown keys go to libfuse, which
// rejects what it does not know either.
std::optional<std::string> apply_option(const std::string &item, options *o,
                                        bool *cache_given) {
  size_t eq = item.find('=');
  std::string key = item.substr(0, eq);
  bool has_value = eq != std::string::npos;
  std::string value = has_value ? item.substr(eq + 1) : "";
  auto need_value = [&]() -> std::optional<std::string> {
    if (!has_value || value.empty()) return "option " + key + "= needs a value";
    return std::nullopt;
  };

  if (key == "size" || key == "max_size") {
    // Both are sizes of the swap area: bytes in whole pages, or N%.
    if (auto e = need_value()) return e;
    size_spec spec;
    if (auto err = parse_size(value, true, &spec)) return "invalid " + key + "=" + value + ": " + *err;
    if (!spec.is_percent() && spec.bytes % (4 * KiB))
      return "invalid " + key + "=" + value + ": must be a multiple of 4K (the page size of swap)";
    (key == "size" ? o->size : o->max_size) = spec;
  } else if (key == "reserve") {
    if (auto e = need_value()) return e;
    size_spec spec;
    if (auto err = parse_size(value, false, &spec)) {
      // 0 is a valid reserve; parse_size refuses it for sizes.
      if (value != "0") return "invalid reserve=" + value + ": " + *err;
      spec.bytes = 0;
    }
    o->reserve = spec;
    o->reserve_given = true;
  } else if (key == "backend") {
    if (value == "cuda") o->backend = backend_kind::cuda;
    else if (value == "host") o->backend = backend_kind::host;
    else return "invalid backend=" + value + ": must be cuda or host";
  } else if (key == "device") {
    if (auto e = need_value()) return e;
    o->device = value;
    o->device_given = true;
  } else if (key == "cache") {
    if (auto e = need_value()) return e;
    if (auto err = parse_power_of_two_size(key, value, 64 * KiB, max_cache, &o->cache)) return err;
    *cache_given = true;
  } else if (key == "block") {
    if (auto e = need_value()) return e;
    if (auto err = parse_power_of_two_size(key, value, min_block, max_block, &o->block)) return err;
  } else if (key == "threads") {
    if (auto e = need_value()) return e;
    if (auto err = parse_count(key, value, max_threads, "a number", &o->threads)) return err;
    o->threads_given = true;
  } else if (key == "copy_timeout") {
    if (auto e = need_value()) return e;
    if (auto err = parse_count(key, value, max_copy_timeout, "a number of seconds", &o->copy_timeout))
      return err;
  } else if (key == "copy_engine") {
    if (value == "auto") o->copy_engine = true;
    else if (value == "off") o->copy_engine = false;
    else return "invalid copy_engine=" + value + ": must be auto or off";
  } else if (key == "busy_poll") {
    if (auto e = need_value()) return e;
    uint64_t us;
    if (parse_unsigned(value, &us) || us > max_busy_poll_us)
      return "invalid busy_poll=" + value + ": must be a number of microseconds from 0 to " +
             std::to_string(max_busy_poll_us);
    o->busy_poll_us = unsigned(us);
    o->busy_poll_given = true;
  } else if (key == "standby") {
    if (value == "1" || !has_value) o->standby = true;
    else if (value == "0") o->standby = false;
    else return "invalid standby=" + value + ": must be 0 or 1";
    o->standby_given = true;
  } else if (key == "transport") {
    if (value == "dev") o->transport = transport_kind::dev;
    else if (value == "uring") o->transport = transport_kind::uring;
    else return "invalid transport=" + value + ": must be dev or uring";
  } else if (key == "queue_depth") {
    if (auto e = need_value()) return e;
    if (auto err = parse_count(key, value, max_queue_depth, "a number", &o->queue_depth)) return err;
    o->uring_queue_given = true;
  } else if (key == "queue_threads") {
    if (auto e = need_value()) return e;
    if (auto err = parse_count(key, value, max_queue_threads, "a number", &o->queue_threads))
      return err;
    o->uring_queue_given = true;
  } else if (key == "max_read" || key == "max_write" || key == "max_background" ||
             key == "congestion_threshold") {
    // vramfs answers the kernel's INIT itself and sizes requests to its
    // buffers; libfuse's parsing of these would only fail obscurely.
    return "option " + key + " is not supported: vramfs sets the request sizes itself";
  } else if (key == "name") {
    if (auto e = need_value()) return e;
    if (value.find('/') != std::string::npos || value == "." || value == ".." ||
        value == ".stats" || value.size() > 255)
      return "invalid name=" + value + ": must be a plain file name other than .stats";
    o->name = value;
  } else if (key == "failover") {
    if (has_value) return "option failover takes no value";
    o->failover = true;
  } else if (key == "lazy") {
    if (has_value) return "option lazy takes no value";
    o->lazy = true;
  } else if (is_ignored_mount_option(key)) {
    // nothing
  } else {
    o->fuse_args.push_back("-o");
    o->fuse_args.push_back(item);
  }
  return std::nullopt;
}

std::optional<std::string> apply_option_list(const std::string &list, options *o,
                                             bool *cache_given) {
  if (list.empty()) return "option -o needs a list of options";
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string::npos) comma = list.size();
    std::string item = list.substr(start, comma - start);
    if (!item.empty())
      if (auto err = apply_option(item, o, cache_given)) return err;
    start = comma + 1;
  }
  return std::nullopt;
}

}  // namespace

backend_kind options::default_backend() {
#ifdef HAVE_CUDA
  return backend_kind::cuda;
#else
  return backend_kind::host;
#endif
}

const char *backend_name(backend_kind kind) {
  return kind == backend_kind::cuda ? "cuda" : "host";
}

const char *available_backends() {
#ifdef HAVE_CUDA
  return "cuda host";
#else
  return "host";
#endif
}

const char *available_transports() {
#ifdef HAVE_LIBURING
  return "dev uring";
#else
  return "dev";
#endif
}

std::vector<std::string> option_warnings(const options &opts) {
  std::vector<std::string> out;
  if (opts.backend == backend_kind::host) {
    if (opts.device_given) out.push_back("device=" + opts.device + " is ignored with backend=host");
    if (opts.reserve_given) out.push_back("reserve= is ignored with backend=host");
  }
  if (opts.transport == transport_kind::dev && opts.uring_queue_given)
    out.push_back("queue_depth= and queue_threads= are ignored with transport=dev");
  if (opts.transport == transport_kind::uring && opts.threads_given)
    out.push_back("threads= is ignored with transport=uring (one thread per CPU queue)");
  if (opts.transport == transport_kind::uring && opts.busy_poll_given)
    out.push_back("busy_poll= is ignored with transport=uring (its threads sleep between requests)");
  if (opts.standby_given && !opts.failover)
    out.push_back("standby= is ignored without failover");
  return out;
}

std::optional<std::string> failover_unsupported(const options &opts) {
  // On Linux 6.14-6.18 the requests in flight on an io_uring queue stay with
  // the dead server's ring: FUSE_NOTIFY_RESEND cannot reach them.
  if (opts.transport == transport_kind::uring)
    return std::string("needs transport=dev: requests in flight on FUSE over io_uring cannot be "
                       "handed to a new server");
  // Not offered: RAM is cheap to hold, and nothing tests a lazy host
  // store whose chunks the keeper keeps.
  if (opts.backend == backend_kind::host && opts.lazy)
    return std::string("backend=host with failover holds all of its memory: lazy is not "
                       "supported with it");
  return std::nullopt;
}

uint64_t cache_limit(uint64_t size, uint64_t block) {
  uint64_t limit = block * 8;
  while (limit < size) limit *= 2;
  return limit;
}

const char *transport_name(transport_kind kind) {
  return kind == transport_kind::uring ? "uring" : "dev";
}

std::optional<std::string> parse_size(const std::string &text, bool allow_percent,
                                      size_spec *out) {
  if (text.empty()) return "empty size";
  if (text[0] == '-') return "must not be negative";
  if (text[0] < '0' || text[0] > '9') return "not a number";
  errno = 0;
  char *end;
  unsigned long long number = strtoull(text.c_str(), &end, 10);
  if (errno == ERANGE) return "too large";
  std::string suffix(end);

  if (suffix == "%") {
    if (!allow_percent) return "a percentage is not allowed here";
    if (number < 1 || number > 100) return "a percentage must be from 1% to 100%";
    *out = size_spec{0, unsigned(number)};
    return std::nullopt;
  }

  unsigned shift = 0;
  if (!suffix.empty()) {
    static const char units[] = "KMGTP";
    const char *unit = strchr(units, toupper((unsigned char)suffix[0]));
    if (!unit || !*unit) return "unknown unit " + quoted(suffix) + " (use K, M, G, T or P)";
    shift = 10 * unsigned(unit - units + 1);
    std::string rest = suffix.substr(1);
    if (!rest.empty() && rest != "B" && rest != "iB")
      return "unknown unit " + quoted(suffix) + " (use K, M, G, T or P)";
  }
  if (number == 0) return "must be greater than 0";
  if (shift && number > (UINT64_MAX >> shift)) return "too large";
  *out = size_spec{uint64_t(number) << shift, 0};
  return std::nullopt;
}

std::string format_size(uint64_t bytes) {
  static const char units[] = "KMGTP";
  int unit = -1;
  while (bytes && bytes % 1024 == 0 && unit < 4) {
    bytes /= 1024;
    ++unit;
  }
  std::string s = std::to_string(bytes);
  if (unit >= 0) s += units[unit];
  return s;
}

unsigned options::default_busy_poll_us() {
  return sysconf(_SC_NPROCESSORS_ONLN) >= 4 ? 50 : 0;
}

std::optional<std::string> parse_command_line(int argc, const char *const *argv,
                                              options *o) {
  *o = options{};
  bool cache_given = false;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      o->show_help = true;
    } else if (arg == "-V" || arg == "--version") {
      o->show_version = true;
    } else if (arg == "--stats-keys") {
      o->show_stats_keys = true;
    } else if (arg == "--check-options") {
      o->check_only = true;
    } else if (arg == "--gpu-memory") {
      if (i + 1 >= argc || !*argv[i + 1]) return "option --gpu-memory needs a GPU (index, UUID or PCI bus id)";
      o->gpu_memory_device = argv[++i];
    } else if (arg == "--prepare-grow") {
      if (i + 2 >= argc || !*argv[i + 2]) return "option --prepare-grow needs a size and a data file";
      size_spec spec;
      if (auto err = parse_size(argv[i + 1], false, &spec))
        return "invalid size for --prepare-grow: " + quoted(argv[i + 1]) + ": " + *err;
      o->prepare_grow_size = spec.bytes;
      o->prepare_grow_file = argv[i + 2];
      i += 2;
    } else if (arg == "-f") {
      o->foreground = true;
    } else if (arg == "-d" || arg == "--debug") {
      o->foreground = true;
      o->debug = true;
    } else if (arg == "-s") {
      // libfuse's single-threaded flag: the worker pool is fixed, so refuse
      // it rather than silently ignore it.
      return "option -s is not supported: vramfs always runs its fixed pool of threads "
             "(see -o threads=N)";
    } else if (arg == "-o") {
      if (i + 1 >= argc) return "option -o needs a list of options";
      if (auto err = apply_option_list(argv[++i], o, &cache_given)) return err;
    } else if (arg.rfind("-o", 0) == 0) {
      if (auto err = apply_option_list(arg.substr(2), o, &cache_given)) return err;
    } else if (arg == "--") {
      for (++i; i < argc; ++i) positional.push_back(argv[i]);
    } else if (arg.size() > 1 && arg[0] == '-') {
      return "unknown option " + quoted(arg) + " (see vramfs --help)";
    } else {
      positional.push_back(arg);
    }
  }
  if (o->show_help || o->show_version || o->show_stats_keys || o->gpu_memory_device ||
      o->prepare_grow_file)
    return std::nullopt;

  if (positional.empty()) return "no mountpoint given (usage: vramfs MOUNTPOINT -o size=SIZE)";
  if (positional.size() > 2)
    return "too many arguments: " + quoted(positional[2]) + " (usage: vramfs [SOURCE] MOUNTPOINT)";
  if (positional.size() == 2) o->source = positional[0];
  o->mountpoint = positional.back();
  if (o->mountpoint.empty()) return "the mountpoint is an empty string";

  // Both in bytes: known now.  (A percentage is resolved by the backend,
  // which checks the same.)
  if (o->size && o->max_size && !o->size->is_percent() && !o->max_size->is_percent() &&
      o->max_size->bytes < o->size->bytes)
    return "max_size=" + format_size(o->max_size->bytes) + " is smaller than size=" +
           format_size(o->size->bytes);
  if (o->cache < o->block * 8) {
    if (cache_given)
      return "cache=" + format_size(o->cache) + " is too small for block=" +
             format_size(o->block) + ": the cache must hold at least 8 blocks";
    o->cache = o->block * 8;  // a large block raises the default cache with it
  }
  return std::nullopt;
}

std::string usage_text(const char *program) {
  std::string text = "usage: " + std::string(program) +
                     " [SOURCE] MOUNTPOINT [-f] [-d] [-o OPTION[,OPTION...]]\n"
                     "\n"
                     "Serves one swap file, MOUNTPOINT/swapfile, from GPU memory.\n"
                     "\n"
                     "vramfs options:\n"
                     "    -o size=SIZE        size of the file: bytes, K/M/G/T, or N% of the\n"
                     "                        backend's memory (cuda default: free VRAM minus reserve)\n"
                     "    -o max_size=SIZE    the most the file may be truncated up to while\n"
                     "                        mounted (default: its size); it shrinks too\n"
                     "    -o reserve=SIZE     VRAM left free when size is not given (default 512M)\n"
                     "    -o backend=NAME     cuda (GPU memory) or host (RAM; for machines without\n"
                     "                        a GPU and for testing); default " +
                     std::string(backend_name(options::default_backend())) +
                     "\n"
                     "    -o device=DEV       GPU index, PCI bus id or UUID (default 0)\n"
                     "    -o cache=SIZE       pinned host cache, power of two (default 64M)\n"
                     "    -o block=SIZE       cache line and allocation unit, power of two,\n"
                     "                        4K to 16M (default 64K)\n"
                     "    -o threads=N        FUSE worker threads of transport=dev (default 8)\n"
                     "    -o transport=NAME   dev (read /dev/fuse) or uring (FUSE over io_uring,\n"
                     "                        Linux 6.14 and later; default dev)\n"
                     "    -o queue_depth=N    entries per io_uring queue, 1 to 128 (default 8)\n"
                     "    -o queue_threads=N  threads (rings) per io_uring queue, 1 to 8 (default 1)\n"
                     "    -o name=NAME        name of the data file (default swapfile)\n"
                     "    -o copy_timeout=S   seconds before a GPU whose copies do not finish counts\n"
                     "                        as stalled and every request fails (default 30)\n"
                     "    -o lazy             take VRAM on first write and give it back on discard\n"
                     "                        instead of reserving all of it at mount\n"
                     "    -o failover         survive the death of the serving process: a keeper\n"
                     "                        process holds the connection and the memory and\n"
                     "                        starts a new server (needs transport=dev)\n"
                     "\n"
                     "general options:\n"
                     "    -f                  stay in the foreground\n"
                     "    -d, --debug         foreground with debug messages\n"
                     "    -h, --help          print this help\n"
                     "    -V, --version       print the version\n"
                     "    --check-options     check the options as a mount would, then exit\n"
                     "    --stats-keys        print the keys of .stats with unit and meaning\n"
                     "    --gpu-memory DEV    print the GPU's free and total memory in bytes, read\n"
                     "                        through the driver (NVML), then exit\n"
                     "    --prepare-grow SIZE FILE\n"
                     "                        take the memory a grow of the mounted data file\n"
                     "                        FILE to SIZE needs, before the truncate, then exit\n"
                     "\n"
                     "FUSE mount options such as -o allow_other are passed to libfuse.\n"
                     "See vramfs(8).\n";
  return text;
}

}  // namespace vramfs
