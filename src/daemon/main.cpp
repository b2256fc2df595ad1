// vramfs: mounts a FUSE filesystem whose one file lives in GPU memory.
#include "common/fault_injection.h"
#include "common/gpu_memory.h"
#include "common/prepare_grow.h"
#include "common/log.h"
#include "common/options.h"
#include "daemon/daemon.h"
#include "daemon/keeper.h"
#include "daemon/server.h"
#include "fuse/mount.h"
#include "fuse/stats_text.h"
#include "fuse/transport.h"

#include "config.h"

#include <fuse_lowlevel.h>

#include <cstdio>

using namespace vramfs;

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
#ifdef VRAMFS_SANITIZED
    const char *build = "; sanitizer build, not for real swap";
#else
    const char *build = "";
#endif
    printf("vramfs %s (backends: %s; transports: %s%s), libfuse %s\n", PACKAGE_VERSION,
           available_backends(), available_transports(), build, fuse_pkgversion());
    return 0;
  }
  if (opts.show_stats_keys) {
    fputs(fuse::describe_stats_keys().c_str(), stdout);
    return 0;
  }
  if (opts.gpu_memory_device) {
    std::string error;
    auto reading = read_gpu_memory(*opts.gpu_memory_device, &error);
    if (!reading) {
      fprintf(stderr, "vramfs: %s\n", error.c_str());
      return 1;
    }
    printf("%llu %llu\n", (unsigned long long)reading->free, (unsigned long long)reading->total);
    return 0;
  }
  if (opts.prepare_grow_file) {
    std::string error;
    if (prepare_grow(*opts.prepare_grow_file, opts.prepare_grow_size, &error)) {
      fprintf(stderr, "vramfs: %s\n", error.c_str());
      return 1;
    }
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

  if (opts.failover) {
    if (auto err = failover_unsupported(opts)) {
      fprintf(stderr, "vramfs: failover: %s\n", err->c_str());
      return 1;
    }
  }
  if (opts.check_only) return 0;

  startup_report report;
  if (!opts.foreground) report.daemonize();  // rule 8: before CUDA
  if (opts.failover) return run_keeper(opts, report);
  return run_server(opts, report, nullptr);
}
