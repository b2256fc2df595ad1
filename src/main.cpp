// vramfs: mounts a FUSE filesystem whose one file lives in GPU memory.
#include "block_store.h"
#include "daemon.h"
#include "extent_map.h"
#include "fault_injection.h"
#include "fuse_ops.h"
#include "log.h"
#include "options.h"
#include "page_cache.h"
#include "stats.h"
#include "worker_pool.h"

#include "config.h"

#include <fuse_lowlevel.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <memory>
#include <new>
#include <thread>
#include <vector>

using namespace vramfs;

namespace {

// The arguments libfuse parses: ours that concern the mount, then the user's.
class fuse_arguments {
 public:
  explicit fuse_arguments(const options &opts) {
    strings_ = {"vramfs", "-o",
                "subtype=vramfs,fsname=" + (opts.source.empty() ? "vramfs" : opts.source) +
                    ",default_permissions,max_read=" + std::to_string(max_request_bytes)};
    if (opts.debug) strings_.push_back("-d");
    strings_.insert(strings_.end(), opts.fuse_args.begin(), opts.fuse_args.end());
    for (std::string &s : strings_) pointers_.push_back(s.data());
    args_ = FUSE_ARGS_INIT(int(pointers_.size()), pointers_.data());
  }
  ~fuse_arguments() { fuse_opt_free_args(&args_); }
  fuse_args *get() { return &args_; }

 private:
  std::vector<std::string> strings_;
  std::vector<char *> pointers_;
  fuse_args args_;
};

// libfuse's own messages, captured while the options are checked.
std::string fuse_messages;

void capture_fuse_message(fuse_log_level, const char *fmt, va_list ap) {
  char line[512];
  vsnprintf(line, sizeof line, fmt, ap);
  fuse_messages += line;
}

// Later libfuse messages go to the daemon's log.
void log_fuse_message(fuse_log_level level, const char *fmt, va_list ap) {
  char line[512];
  vsnprintf(line, sizeof line, fmt, ap);
  size_t len = strlen(line);
  while (len && line[len - 1] == '\n') line[--len] = 0;
  log_message(level <= FUSE_LOG_ERR ? log_level::error
              : level <= FUSE_LOG_WARNING ? log_level::warning
              : level <= FUSE_LOG_INFO ? log_level::info
                                       : log_level::debug,
              "%s", line);
}

// Whether libfuse accepts the user's FUSE options, checked before forking
// so that a typo is answered on the terminal at once, in one line.
std::optional<std::string> check_fuse_options(const options &opts) {
  fuse_arguments args(opts);
  fuse_set_log_func(capture_fuse_message);
  fuse_session *se = fuse_session_new(args.get(), &filesystem_operations(),
                                      sizeof(fuse_lowlevel_ops), nullptr);
  fuse_set_log_func(log_fuse_message);
  if (se) {
    fuse_session_destroy(se);
    return std::nullopt;
  }
  std::string text = fuse_messages;
  if (text.rfind("fuse: ", 0) == 0) text.erase(0, 6);
  while (!text.empty() && text.back() == '\n') text.pop_back();
  if (size_t nl = text.find('\n'); nl != std::string::npos) text.resize(nl);
  return (text.empty() ? std::string("invalid FUSE options") : text) + " (see vramfs --help)";
}

// The mount is usable once the kernel's INIT is answered and the data file
// can be looked up through it, served by the workers like any request.
std::optional<std::string> wait_until_usable(const filesystem &fs, const options &opts) {
  for (int i = 0; i < 10000 && !fs.initialized; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (!fs.initialized) return "the kernel did not initialise the mount within 10 seconds";
  std::string path = opts.mountpoint + "/" + opts.name;
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return path + " is not usable: " + strerror(errno);
  return std::nullopt;
}

// Runs the filesystem until it is unmounted.  Every failure before the mount
// is usable goes to report.failure(), which the waiting parent prints.
int serve(const options &opts, startup_report &report) {
  // Rule 1: before any thread exists and before CUDA starts.
  stats counters;
  // Said once the mount works, so that a failed mount prints one line.
  std::vector<std::string> warnings;
  if (auto err = lock_memory()) {
    report.failure(*err);
    return 1;
  }
#ifdef VRAMFS_SANITIZED
  warnings.push_back("sanitizer build: memory is not locked; do not use this build for real swap");
#else
  counters.memory_locked = true;
#endif
  // Both need CAP_SYS_RESOURCE, which some containers withhold from root.
  // Without them the daemon still works but can stall under extreme memory
  // pressure: say so loudly, and show it in .stats.
  if (auto err = become_io_flusher())
    warnings.push_back(*err + "; swap through this mount may stall under memory pressure");
  else
    counters.io_flusher = true;
  if (auto err = protect_from_oom())
    warnings.push_back(*err + "; the OOM killer may pick this daemon");
  else
    counters.oom_protected = true;
  block_stop_signals();
  limit_thread_stacks();

  std::string error;
  std::unique_ptr<block_store> store = create_store(opts, &error);
  if (!store) {
    report.failure(error);
    return 1;
  }
  extent_map extents((store->size() + opts.block - 1) / opts.block);
  std::unique_ptr<page_cache> cache;
  std::unique_ptr<worker_pool> pool;
  try {
    // Rule 2: every line, buffer, stream and thread before the mount.
    cache = std::make_unique<page_cache>(*store, extents, counters, opts.block, opts.cache);
    pool = std::make_unique<worker_pool>(*store, opts.threads, max_request_bytes);
  } catch (const std::bad_alloc &) {
    report.failure("cannot allocate the " + format_size(opts.cache) +
                   " cache and the request buffers in locked host memory");
    return 1;
  }
  filesystem fs(*store, extents, *cache, counters, opts.name);

  fuse_arguments args(opts);
  fuse_session *se = fuse_session_new(args.get(), &filesystem_operations(),
                                      sizeof(fuse_lowlevel_ops), &fs);
  if (!se) {
    report.failure("invalid FUSE options");
    return 1;
  }
  if (fuse_session_mount(se, opts.mountpoint.c_str()) != 0) {
    fuse_session_destroy(se);
    report.failure("cannot mount on " + opts.mountpoint);
    return 1;
  }
  cache->start_writeback();
  pool->start(se);
  if (auto err = wait_until_usable(fs, opts)) {
    unmount(opts.mountpoint);
    pool->join();
    fuse_session_unmount(se);
    fuse_session_destroy(se);
    report.failure(*err);
    return 1;
  }

  // Rule 6: never exit under a live swap.
  stop_signals signals([&](const char *signal) -> std::optional<std::string> {
    if (uint64_t opens = fs.data_opens.load())
      return std::string("refusing ") + signal + ": " + opts.mountpoint + "/" + opts.name +
             " is open " + std::to_string(opens) +
             " time(s) (a loop device or swap uses it); stop with 'vramswap stop', or "
             "swapoff, losetup -d and umount " + opts.mountpoint + " first";
    if (auto err = unmount(opts.mountpoint))
      return std::string("refusing ") + signal + ": cannot unmount " + opts.mountpoint + ": " +
             *err;
    log_info("%s: unmounted %s", signal, opts.mountpoint.c_str());
    return std::nullopt;
  });

  for (const std::string &warning : warnings) log_warn("%s", warning.c_str());
  report.ready();
  log_info("serving %s/%s: %s of %s memory on %s, %s cache of %s blocks, %u threads (%s)",
           opts.mountpoint.c_str(), opts.name.c_str(), format_size(store->size()).c_str(),
           store->backend(), store->device().c_str(), format_size(opts.cache).c_str(),
           format_size(opts.block).c_str(), opts.threads, describe_connection().c_str());

  pool->join();  // until the filesystem is unmounted
  cache->stop_writeback();
  fuse_session_unmount(se);
  fuse_session_destroy(se);
  log_info("%s unmounted; exiting", opts.mountpoint.c_str());
  return 0;
}

}  // namespace

int main(int argc, char **argv) {
  options opts;
  if (auto err = parse_command_line(argc, argv, &opts)) {
    fprintf(stderr, "vramfs: %s\n", err->c_str());
    return 1;
  }
  if (opts.show_help) {
    fputs(usage_text("vramfs").c_str(), stdout);
    return 0;
  }
  if (opts.show_version) {
#ifdef HAVE_CUDA
    printf("vramfs %s (backends: cuda host), libfuse %d\n", PACKAGE_VERSION, fuse_version());
#else
    printf("vramfs %s (backends: host), libfuse %d\n", PACKAGE_VERSION, fuse_version());
#endif
    return 0;
  }
  if (auto err = fault_injection::configure_from_environment()) {
    fprintf(stderr, "vramfs: %s\n", err->c_str());
    return 1;
  }
#ifndef HAVE_CUDA
  if (opts.backend == backend_kind::cuda) {
    fprintf(stderr, "vramfs: this vramfs was built without CUDA; -o backend=host serves from RAM\n");
    return 1;
  }
#endif
  if (auto err = check_mountpoint(opts.mountpoint)) {
    fprintf(stderr, "vramfs: %s\n", err->c_str());
    return 1;
  }
  if (auto err = check_fuse_options(opts)) {
    fprintf(stderr, "vramfs: %s\n", err->c_str());
    return 1;
  }
  log_set_verbose(opts.debug);

  startup_report report;
  if (!opts.foreground) report.daemonize();  // rule 8: before CUDA
  return serve(opts, report);
}
