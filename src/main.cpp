// vramfs: mounts a FUSE filesystem whose one file lives in GPU memory.
#include "block_store.h"
#include "daemon.h"
#include "extent_map.h"
#include "fault_injection.h"
#include "fuse/mount.h"
#include "fuse/operations.h"
#include "fuse/transport.h"
#include "log.h"
#include "options.h"
#include "page_cache.h"
#include "stats.h"

#include "config.h"

#include <fuse_lowlevel.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <new>
#include <vector>

using namespace vramfs;

namespace {

// The mount is usable once the kernel's INIT is answered and the data file
// can be looked up through it, served by the transport like any request.
std::optional<std::string> wait_until_usable(fuse::transport &t, const fuse::filesystem &fs,
                                             const options &opts) {
  switch (t.initialized().wait_for(10000)) {
    case fuse::init_latch::state::waiting:
      return "the kernel did not initialise the mount within 10 seconds";
    case fuse::init_latch::state::refused:
      return fs.init_refusal.empty() ? "the kernel ended the connection before INIT"
                                     : fs.init_refusal;
    case fuse::init_latch::state::accepted: break;
  }
  std::string path = opts.mountpoint + "/" + opts.name;
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return path + " is not usable: " + strerror(errno);
  return std::nullopt;
}

std::unique_ptr<fuse::transport> make_transport(const options &opts, fuse::filesystem &fs,
                                                block_store &store) {
  if (opts.transport == transport_kind::uring)
    return fuse::make_uring_transport(fs, store, opts.queue_depth);
  return fuse::make_device_transport(fs, store, opts.threads);
}

// Runs the filesystem until it is unmounted.  Every failure before the mount
// is usable goes to report.failure(), which the waiting parent prints.
int serve(const options &opts, startup_report &report) {
  // Rule 1: before any thread exists and before CUDA starts.
  stats counters;
  // Said once the mount works, so that a failed mount prints one line.
  std::vector<std::string> warnings = option_warnings(opts);
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
  // A cache larger than the file would lock memory that is never used.
  uint64_t cache_bytes = std::min(opts.cache, cache_limit(store->size(), opts.block));
  extent_map extents((store->size() + opts.block - 1) / opts.block);
  std::unique_ptr<page_cache> cache;
  std::unique_ptr<fuse::filesystem> fs;
  std::unique_ptr<fuse::transport> transport;
  try {
    // Rule 2: every line, buffer, stream, ring and thread before the mount.
    cache = std::make_unique<page_cache>(*store, extents, counters, opts.block, cache_bytes);
    fs = std::make_unique<fuse::filesystem>(
        *store, extents, *cache, counters, opts.name,
        fuse::connection_wish{opts.transport == transport_kind::uring});
    transport = make_transport(opts, *fs, *store);
  } catch (const std::bad_alloc &) {
    report.failure("cannot allocate the " + format_size(cache_bytes) +
                   " cache and the request buffers in locked host memory" +
                   memory_limit_hint());
    return 1;
  } catch (const std::exception &e) {
    report.failure(e.what());
    return 1;
  }

  auto mount = fuse::mount::create(opts, &error);
  if (!mount) {
    report.failure(error);
    return 1;
  }
  cache->start_writeback();
  transport->start(mount->fd());
  if (auto err = wait_until_usable(*transport, *fs, opts)) {
    if (auto not_unmounted = mount->abandon())
      log_err("cannot unmount %s after the failed start: %s", opts.mountpoint.c_str(),
              not_unmounted->c_str());
    transport->join();
    report.failure(*err);
    return 1;
  }

  // Rule 6: never exit under a live swap.
  stop_signals signals([&](const char *signal) -> std::optional<std::string> {
    if (uint64_t opens = fs->data_opens.load())
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

  if (!report.ready(warnings)) {
    // Whoever started us is gone (Ctrl-C on vramfs, a killed vramswap):
    // the start was abandoned, so leave nothing mounted, unless something
    // already opened the file.
    if (auto err = mount->abandon())
      log_warn("the start of %s was interrupted, but it cannot be unmounted (%s): serving it",
               opts.mountpoint.c_str(), err->c_str());
    else
      log_info("the start of %s was interrupted; unmounted it", opts.mountpoint.c_str());
  }
  log_info("serving %s/%s: %s of %s memory on %s, %s cache of %s blocks, %s (%s)",
           opts.mountpoint.c_str(), opts.name.c_str(), format_size(store->size()).c_str(),
           store->backend(), store->device().c_str(), format_size(cache_bytes).c_str(),
           format_size(opts.block).c_str(), transport->describe().c_str(),
           fuse::describe(fs->terms).c_str());

  transport->join();  // until the connection ends
  cache->stop_writeback();
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
    printf("vramfs %s (backends: %s; transports: %s), libfuse %s\n", PACKAGE_VERSION,
           available_backends(), available_transports(), fuse_pkgversion());
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
  // Absolute before daemonizing, which changes to /.
  if (auto err = resolve_mountpoint(&opts.mountpoint)) {
    fprintf(stderr, "vramfs: %s\n", err->c_str());
    return 1;
  }
  if (opts.transport == transport_kind::uring) {
    if (auto err = fuse::uring_unavailable()) {
      fprintf(stderr, "vramfs: transport=uring: %s\n", err->c_str());
      return 1;
    }
  }
  if (auto err = fuse::mount::check_options(opts)) {
    fprintf(stderr, "vramfs: %s\n", err->c_str());
    return 1;
  }
  log_set_verbose(opts.debug);

  startup_report report;
  if (!opts.foreground) report.daemonize();  // rule 8: before CUDA
  return serve(opts, report);
}
