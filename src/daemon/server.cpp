#include "daemon/server.h"

#include "cache/extent_map.h"
#include "cache/page_cache.h"
#include "common/fault_injection.h"
#include "common/log.h"
#include "common/memlock.h"
#include "common/options.h"
#include "daemon/daemon.h"
#include "failover/control.h"
#include "failover/failed_mode.h"
#include "failover/state_region.h"
#include "fuse/mount.h"
#include "fuse/mount_state.h"
#include "fuse/operations.h"
#include "fuse/transport.h"
#include "store/block_store.h"
#include "store/failed_store.h"
#include "store/faulty_store.h"

#include "config.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <thread>

namespace vramfs {
namespace {

using failover::message_kind;

// Rule 1 (docs/design.md): before any thread exists and before CUDA
// starts.  What could not be done is said once the mount works, so that a
// failed mount prints one line.
std::optional<std::string> protect_process(stats &counters, std::vector<std::string> *warnings) {
  if (auto err = lock_memory()) return err;
#ifdef VRAMFS_SANITIZED
  warnings->push_back("sanitizer build: memory is not locked; do not use this build for real swap");
#else
  counters.memory_locked = true;
#endif
  // Both need CAP_SYS_RESOURCE, which some containers withhold from root.
  // Without them the daemon still works but can stall under extreme memory
  // pressure: say so loudly, and show it in .stats.
  if (auto err = become_io_flusher())
    warnings->push_back(*err + "; swap through this mount may stall under memory pressure");
  else
    counters.io_flusher = true;
  if (auto err = protect_from_oom())
    warnings->push_back(*err + "; the OOM killer may pick this daemon");
  else
    counters.oom_protected = true;
  block_stop_signals();
  limit_thread_stacks();
  return std::nullopt;
}

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
  // Before any request through the mount: over io_uring, one would wait
  // for ever on rings the kernel refused.
  if (auto err = t.wait_ready(10000)) return err;
  std::string path = opts.mountpoint + "/" + opts.name;
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return path + " is not usable: " + strerror(errno);
  return std::nullopt;
}

// A server's pieces, built in the order of the design's sentences: protect
// the process, take the memory, lay out the state, make the threads, then
// connect to the kernel.  Each step reports its own failure.
class server {
 public:
  server(const options &opts, startup_report &report, keeper_context *keeper)
      : opts_(opts), report_(report), keeper_(keeper) {}
  ~server();

  int run();

 private:
  bool fail(const std::string &message) {
    report_.failure(message);
    return false;
  }
  bool open_store();
  // Puts a test's store faults (VRAMFS_INJECT_FAULT) around the store.
  bool with_test_faults();
  bool lay_out_state();
  bool make_transport();
  bool connect();
  // A takeover: the state as the dead server left it, then the kernel's
  // resend, then the threads.
  bool take_over();
  // The keeper's messages: for a standby, the memory its predecessor takes
  // and gives back, and the word to go; for every server, the keeper's
  // death (end of file).
  void listen_to_the_keeper();
  // A standby: waits until the keeper says go (true) or dies (false).
  bool wait_for_go();
  void record_protections();
  std::optional<std::string> stop_refusal(const char *signal);
  void announce();

  const options &opts_;
  startup_report &report_;
  keeper_context *keeper_;
  std::vector<std::string> warnings_;

  mount_state own_state_;  // without failover
  mount_state *state_ = &own_state_;
  std::unique_ptr<block_store> store_;
  std::unique_ptr<failover::state_region> own_region_;  // the first server's
  failover::state_region *region_ = nullptr;
  bool lines_pinned_ = false;
  std::unique_ptr<extent_map> extents_;
  std::unique_ptr<page_cache> cache_;
  std::unique_ptr<fuse::filesystem> fs_;
  std::unique_ptr<fuse::transport> transport_;
  std::unique_ptr<fuse::mount> mount_;
  int fuse_fd_ = -1;
  std::thread keeper_watch_;
  std::atomic<bool> closing_{false};  // the watcher's end of file is ours
  std::mutex go_mutex_;
  std::condition_variable go_cv_;
  enum class go_state { waiting, go, keeper_gone } go_ = go_state::waiting;
};

server::~server() {
  if (keeper_watch_.joinable()) {
    // The watcher reads through this object: it must end before the members
    // it uses do, on every way out of run() (a standby whose keeper went
    // away before it was ready returns while the watcher still reports it).
    // Shutting our reading side wakes its recvmsg with an end of file.
    closing_.store(true);
    shutdown(keeper_->control, SHUT_RD);
    keeper_watch_.join();
  }
  if (transport_) transport_->join();
  if (cache_) cache_->stop_writeback();
  cache_.reset();
  if (lines_pinned_) store_->unpin_host(region_->lines());
}

bool server::open_store() {
  std::string error;
  if (keeper_ && keeper_->failed_mode) {
    store_ = std::make_unique<failed_store>(keeper_->region->state().file_size.load(),
                                            keeper_->region->layout().file_size);
    return true;
  }
  if (!keeper_) {
    store_ = create_store(opts_, &error);
    return store_ ? with_test_faults() : fail(error);
  }
  // -o failover: every piece of memory that must outlive this process goes
  // to the keeper before anything is stored in it.
  int control = keeper_->control;
  store_keeping keeping;
  keeping.takeover = keeper_->takeover;
  if (keeping.takeover) {
    keeping.size = keeper_->region->layout().file_size;
    keeping.file_size = keeper_->region->state().file_size.load();
  }
  keeping.keep_chunk = [control](uint64_t index, int fd, uint64_t bytes) {
    int err = failover::send_message(control, message_kind::vram_chunk, index, bytes, "", fd);
    // Without a keeper nothing survives this server anyway: the chunk is
    // still usable here, and the write that needs it must not fail.
    if (err == -EPIPE || err == -ECONNRESET) {
      log_err_limited("the keeper is gone: memory chunk %llu is not kept",
                      (unsigned long long)index);
      return 0;
    }
    return err;
  };
  keeping.drop_chunk = [control](uint64_t index) {
    failover::send_message(control, message_kind::vram_released, index);
  };
  keeping.chunks = keeper_->chunks;
  store_ = create_store(opts_, &error, &keeping);
  // The chunks' descriptors came with the fork from the keeper, and each
  // one keeps its chunk's memory: once the store has mapped them they must
  // go, or a chunk the serving server gives back would stay allocated for
  // as long as this server (a standby's whole life) runs.
  for (auto &[index, fd] : keeper_->chunks) close(fd);
  keeper_->chunks.clear();
  return store_ ? with_test_faults() : fail(error);
}

bool server::with_test_faults() {
  if (fault_injection::store_faults()) store_ = std::make_unique<faulty_store>(std::move(store_));
  return true;
}

bool server::lay_out_state() {
  // Laid out for the largest size: the file may grow to it while mounted.
  uint64_t blocks = (store_->max_size() + opts_.block - 1) / opts_.block;
  // A cache larger than the file would lock memory that is never used.
  uint64_t cache_bytes = std::min(opts_.cache, cache_limit(store_->max_size(), opts_.block));
  try {
    if (!keeper_) {
      own_state_.file_size.store(store_->size());
      extents_ = std::make_unique<extent_map>(blocks);
      // Rule 2: every line before the mount is announced.
      cache_ = std::make_unique<page_cache>(*store_, *extents_, state_->counters, opts_.block,
                                            cache_bytes);
      return true;
    }
    failover::state_region::shape shape{store_->max_size(), opts_.block,
                                         page_cache::line_count_for(opts_.block, cache_bytes)};
    if (keeper_->takeover) {
      region_ = keeper_->region;
      if (!(region_->layout() == shape))
        return fail("the failover state does not match this mount's size, block or cache");
    } else {
      std::string error;
      own_region_ = failover::state_region::create(shape, &error);
      if (!own_region_) return fail(error);
      region_ = own_region_.get();
      region_->state().file_size.store(store_->size());
      if (int err = failover::send_message(keeper_->control, message_kind::state_region, 0, 0,
                                           "", region_->fd()))
        return fail(std::string("cannot hand the state to the keeper: ") + strerror(-err));
    }
    state_ = &region_->state();
    bool fresh = !keeper_->takeover;
    extents_ = std::make_unique<extent_map>(blocks, region_->extent_words(), fresh);
    if (int err = store_->pin_host(region_->lines(), shape.line_count * opts_.block))
      return fail(std::string("cannot pin the shared cache for the GPU: ") + strerror(-err));
    lines_pinned_ = true;
    // A standby's predecessor still serves: nothing of the shared state is
    // changed until it is dead (take_over).
    cache_ = std::make_unique<page_cache>(
        *store_, *extents_, state_->counters, opts_.block, shape.line_count,
        page_cache::memory{region_->sets(), region_->lines(), fresh, keeper_->standby});
  } catch (const std::bad_alloc &) {
    return fail("cannot allocate the " + format_size(cache_bytes) + " cache in locked host memory" +
                memory_limit_hint());
  }
  return true;
}

bool server::make_transport() {
  fs_ = std::make_unique<fuse::filesystem>(
      *store_, *extents_, *cache_, *state_, opts_.name,
      fuse::connection_wish{opts_.transport == transport_kind::uring, opts_.failover});
  try {
    // Rule 2: every buffer, stream, ring and thread before the mount.
    if (opts_.transport == transport_kind::uring)
      transport_ = fuse::make_uring_transport(*fs_, *store_, opts_.queue_depth, opts_.queue_threads);
    else
      transport_ = fuse::make_device_transport(*fs_, *store_, opts_.threads, opts_.busy_poll_us);
  } catch (const std::bad_alloc &) {
    return fail("cannot allocate the request buffers in locked host memory" +
                memory_limit_hint());
  } catch (const std::exception &e) {
    return fail(e.what());
  }
  return true;
}

bool server::connect() {
  if (keeper_ && keeper_->takeover) return take_over();
  // A failed store has nothing to write back to.
  if (!store_->failed()) cache_->start_writeback();
  std::string error;
  mount_ = fuse::mount::create(opts_, &error);
  if (!mount_) return fail(error);
  fuse_fd_ = mount_->fd();
  if (keeper_) {
    // Before anything can depend on it: a server that dies holding the only
    // descriptor of the connection takes the mount with it.
    if (int err = failover::send_message(keeper_->control, message_kind::fuse_device, 0, 0, "",
                                         fuse_fd_)) {
      mount_->abandon();
      return fail(std::string("cannot hand the connection to the keeper: ") + strerror(-err));
    }
  }
  if (keeper_) fs_->resize_crash_countdown.store(fault_injection::resize_crash_at());
  transport_->start(fuse_fd_);
  if (auto err = wait_until_usable(*transport_, *fs_, opts_)) {
    if (auto not_unmounted = mount_->abandon())
      log_err("cannot unmount %s after the failed start: %s", opts_.mountpoint.c_str(),
              not_unmounted->c_str());
    transport_->join();
    return fail(*err);
  }
  return true;
}

bool server::take_over() {
  if (keeper_->standby) {
    // Counted from the shared state only now: the predecessor changed it
    // until it died.
    extents_->recount();
    cache_->take_over_lines();
    record_protections();
  }
  // The dead server may have died in a resize: its recorded size is the
  // truth, and nothing is cached or held past it.
  cache_->settle_size(state_->file_size.load());
  if (!store_->failed()) cache_->start_writeback();
  // The connection lives on in the keeper: no mount, no INIT.  The kernel
  // queues again every request the dead server had read but not answered;
  // asked before any thread runs, so that a refusal leaves none to join.
  fuse_fd_ = keeper_->fuse_fd;
  if (state_->initialized.load(std::memory_order_acquire)) transport_->assume_initialized();
  if (int err = fuse::send_notify_resend(fuse_fd_))
    return fail(std::string("cannot ask the kernel to resend requests: ") + strerror(-err));
  fs_->first_answer_pending.store(true);
  if (!keeper_->failed_mode) fs_->crash_countdown.store(fault_injection::takeover_crash_at());
  transport_->start(fuse_fd_);
  return true;
}

void server::listen_to_the_keeper() {
  int control = keeper_->control;
  pid_t keeper = keeper_->keeper_pid;
  keeper_watch_ = std::thread([this, control, keeper] {
    for (;;) {
      auto m = failover::receive_message(control, false);
      if (!m) {
        if (errno == EINTR || errno == EPROTO) continue;
        break;  // end of file: the keeper is gone, or this server is closing
      }
      switch (m->kind) {
        case message_kind::vram_chunk:
          if (int err = store_->adopt_chunk(m->index, m->fd))
            log_err("standby: cannot map VRAM chunk %llu: %s", (unsigned long long)m->index,
                    strerror(-err));
          break;
        case message_kind::vram_released: store_->forget_chunk(m->index); break;
        case message_kind::go: {
          std::lock_guard lock(go_mutex_);
          go_ = go_state::go;
          go_cv_.notify_all();
          break;
        }
        default: break;
      }
      if (m->fd >= 0) close(m->fd);
    }
    if (closing_.load()) return;
    {
      std::lock_guard lock(go_mutex_);
      if (go_ == go_state::waiting) {
        // A standby whose keeper died has nothing to take over.
        go_ = go_state::keeper_gone;
        go_cv_.notify_all();
        return;
      }
    }
    // A server of -o failover serves on if its keeper dies, but can no
    // longer be replaced: say so, in the log and in .stats.
    state_->keeper_alive.store(0);
    log_err("the vramfs keeper (pid %d) of %s died: this mount no longer survives the death of "
            "its server; stop it with 'vramswap stop' and start it again",
            int(keeper), opts_.mountpoint.c_str());
  });
}

bool server::wait_for_go() {
  std::unique_lock lock(go_mutex_);
  go_cv_.wait(lock, [this] { return go_ != go_state::waiting; });
  return go_ == go_state::go;
}

void server::record_protections() {
  // The protections are this process's: recorded in the shared state
  // before any thread of this server can read it.
  if (state_ == &own_state_) return;
  state_->counters.memory_locked = own_state_.counters.memory_locked;
  state_->counters.io_flusher = own_state_.counters.io_flusher;
  state_->counters.oom_protected = own_state_.counters.oom_protected;
}

// Rule 6: never exit under a live swap.
std::optional<std::string> server::stop_refusal(const char *signal) {
  if (uint64_t opens = state_->data_opens())
    return std::string("refusing ") + signal + ": " + opts_.mountpoint + "/" + opts_.name +
           " is open " + std::to_string(opens) +
           " time(s) (a loop device or swap uses it); stop with 'vramswap stop', or "
           "swapoff, losetup -d and umount " + opts_.mountpoint + " first";
  if (auto err = fuse::unmount(opts_.mountpoint))
    return std::string("refusing ") + signal + ": cannot unmount " + opts_.mountpoint + ": " +
           *err;
  log_info("%s: unmounted %s", signal, opts_.mountpoint.c_str());
  return std::nullopt;
}

void server::announce() {
  const char *role = !keeper_ ? "serving" : keeper_->failed_mode ? "failed mode: answering EIO for"
                     : keeper_->takeover ? "took over" : "serving";
  std::string size = format_size(store_->size());
  if (store_->max_size() != store_->size()) size += " (at most " + format_size(store_->max_size()) + ")";
  log_info("%s %s/%s: %s of %s memory on %s, %s cache of %s blocks, %s (%s)%s", role,
           opts_.mountpoint.c_str(), opts_.name.c_str(), size.c_str(),
           store_->backend(), store_->device().c_str(),
           format_size(cache_->line_count() * opts_.block).c_str(),
           format_size(opts_.block).c_str(), transport_->describe().c_str(),
           fuse::describe(state_->terms).c_str(), keeper_ ? ", failover" : "");
}

int server::run() {
  if (auto err = protect_process(own_state_.counters, &warnings_)) {
    report_.failure(*err);
    return 1;
  }
  for (std::string &w : option_warnings(opts_)) warnings_.push_back(std::move(w));
  auto injected_takeover_failure = [this] {
    return keeper_ && keeper_->takeover && !keeper_->failed_mode &&
           fault_injection::takeover_fails(keeper_->takeover_number);
  };
  if (!(keeper_ && keeper_->standby) && injected_takeover_failure()) {
    report_.failure("injected takeover failure");
    return 1;
  }
  if (!open_store() || !lay_out_state()) return 1;
  if (keeper_ && !keeper_->takeover && opts_.standby &&
      (store_->single_process() || fault_injection::device_single_process())) {
    // Known before the keeper starts a standby, which could not get a
    // context of its own.
    state_->standby.store(standby_state::unavailable);
    log_warn("%s: the GPU admits one process at a time (exclusive-process compute mode): no "
             "standby server can wait beside this one, so a takeover starts a new server",
             opts_.mountpoint.c_str());
  }
  if (!keeper_ || !keeper_->standby) record_protections();
  if (!make_transport()) return 1;
  if (keeper_) {
    if (!keeper_->standby) go_ = go_state::go;  // nothing to wait for
    listen_to_the_keeper();
  }
  if (keeper_ && keeper_->standby) {
    // Everything is ready but the state, which the serving server still
    // owns: wait for the keeper's word that it died.
    if (failover::send_message(keeper_->control, message_kind::standby_ready) != 0) return 1;
    if (!wait_for_go()) return 0;
    if (injected_takeover_failure()) {
      report_.failure("injected takeover failure");
      return 1;
    }
  }
  if (!connect()) return 1;
  std::unique_ptr<stop_signals> signals;
  if (keeper_) {
    if (keeper_->failed_mode) {
      state_->failed.store(1);
      failover::take_failed_swap_off(opts_.mountpoint + "/" + opts_.name);
    }
  } else {
    signals = std::make_unique<stop_signals>(
        [this](const char *signal) { return stop_refusal(signal); });
  }
  if (uint64_t ms = fault_injection::start_delay_ms())
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  if (!report_.ready(warnings_) && mount_) {
    // Whoever started us is gone (Ctrl-C on vramfs, a killed vramswap):
    // the start was abandoned, so leave nothing mounted, unless something
    // already opened the file.
    if (auto err = mount_->abandon())
      log_warn("the start of %s was interrupted, but it cannot be unmounted (%s): serving it",
               opts_.mountpoint.c_str(), err->c_str());
    else
      log_info("the start of %s was interrupted; unmounted it", opts_.mountpoint.c_str());
  }
  announce();
  transport_->join();  // until the connection ends
  cache_->stop_writeback();
  log_info("%s unmounted; exiting", opts_.mountpoint.c_str());
  return 0;
}

}  // namespace

int run_server(const options &opts, startup_report &report, keeper_context *keeper) {
  server s(opts, report, keeper);
  return s.run();
}

}  // namespace vramfs
