#include "daemon/keeper.h"

#include "common/log.h"
#include "common/options.h"
#include "daemon/daemon.h"
#include "daemon/server.h"
#include "failover/control.h"
#include "failover/state_region.h"
#include "fuse/mount.h"
#include "fuse/mount_state.h"

#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

namespace vramfs {
namespace {

using failover::message;
using failover::message_kind;

int64_t monotonic_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string describe_exit(int status) {
  if (WIFSIGNALED(status))
    return std::string("killed by signal ") + std::to_string(WTERMSIG(status)) + " (" +
           strsignal(WTERMSIG(status)) + ")";
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

// A server's start, told to the keeper over the control socket.
class control_report final : public startup_report {
 public:
  explicit control_report(int control) : control_(control) {}
  bool ready(const std::vector<std::string> &warnings) override {
    std::string text;
    for (const std::string &w : warnings) text += (text.empty() ? "" : "\n") + w;
    return failover::send_message(control_, message_kind::ready, 0, 0, text) == 0;
  }
  void failure(const std::string &text) override {
    log_err("%s", text.c_str());
    failover::send_message(control_, message_kind::failure, 0, 0, text);
  }

 private:
  int control_;
};

// Consecutive servers that died before they served: then no server can be
// started, and the mount goes into failed mode.
constexpr int max_failed_starts = 5;

class keeper {
 public:
  keeper(const options &opts, startup_report &report) : opts_(opts), report_(report) {}
  ~keeper();
  int run();

 private:
  bool set_up();
  void start_server();
  void handle(message m);
  void drain_messages();
  // Returns an exit status when the keeper is done, -1 to go on.
  int server_exited(int status);
  void stop_signal(const char *name);
  bool connection_gone() const;
  void abandon_mount();

  const options &opts_;
  startup_report &report_;
  int control_ = -1, server_end_ = -1, signals_ = -1;
  pid_t server_ = 0;
  bool served_ = false;        // the first server was ready once
  bool server_ready_ = false;  // the server that runs now is
  bool failed_mode_ = false;
  int failed_starts_ = 0;      // servers in a row that died before they were ready
  uint64_t takeovers_ = 0;
  int64_t death_us_ = 0;   // when the server died, for the takeover time
  int64_t restart_at_us_ = 0;  // a delayed restart is due then; 0: none
  std::string last_failure_, death_;

  int fuse_fd_ = -1, state_fd_ = -1, host_fd_ = -1;
  std::unique_ptr<failover::state_region> region_;
  std::byte *host_data_ = nullptr;
  size_t host_bytes_ = 0;
  std::map<uint64_t, int> chunks_;  // VRAM chunk index -> descriptor
};

keeper::~keeper() {
  for (auto &[index, fd] : chunks_) close(fd);
  if (host_data_) munmap(host_data_, host_bytes_);
  for (int fd : {fuse_fd_, state_fd_, host_fd_, control_, server_end_, signals_})
    if (fd >= 0) close(fd);
}

bool keeper::set_up() {
  stats ignored;
  std::vector<std::string> warnings;
  // The daemon's rules hold for the keeper too: it must never wait on the
  // swap it keeps alive.
  if (auto err = lock_memory()) {
    report_.failure(*err);
    return false;
  }
  if (become_io_flusher() || protect_from_oom())
    log_debug("the keeper runs without IO_FLUSHER or OOM protection (no CAP_SYS_RESOURCE)");
  // One descriptor per VRAM chunk: a large card in lazy mode needs many.
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) == 0) {
    files.rlim_cur = files.rlim_max = std::max<rlim_t>(files.rlim_max, 1 << 16);
    if (setrlimit(RLIMIT_NOFILE, &files) != 0) {
      getrlimit(RLIMIT_NOFILE, &files);
      files.rlim_cur = files.rlim_max;
      setrlimit(RLIMIT_NOFILE, &files);
    }
  }
  auto channel = failover::make_channel();
  if (!channel) {
    report_.failure(std::string("cannot create the keeper's control socket: ") + strerror(errno));
    return false;
  }
  std::tie(control_, server_end_) = *channel;
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&set, sig);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  signals_ = signalfd(-1, &set, SFD_CLOEXEC);
  if (signals_ < 0) {
    report_.failure(std::string("cannot create the keeper's signalfd: ") + strerror(errno));
    return false;
  }
  return true;
}

void keeper::start_server() {
  restart_at_us_ = 0;
  server_ready_ = false;
  keeper_context ctx;
  ctx.control = server_end_;
  ctx.keeper_pid = getpid();
  ctx.takeover = served_;
  ctx.takeover_number = takeovers_;
  ctx.fuse_fd = fuse_fd_;
  ctx.region = region_.get();
  ctx.host_data = host_data_;
  for (auto &[index, fd] : chunks_) ctx.vram_chunks.emplace_back(index, fd);
  ctx.failed_mode = failed_mode_;
  pid_t pid = fork();
  if (pid < 0) {
    log_err("cannot fork a vramfs server: %s", strerror(errno));
    server_ = 0;
    restart_at_us_ = monotonic_us() + 1000000;
    return;
  }
  if (pid == 0) {
    // The server: the keeper's loop and its answer to the user are not its.
    close(control_);
    close(signals_);
    bool daemonized = report_.daemonized();
    report_.forget_parent();
    if (daemonized) detach_from_terminal();
    control_report report(server_end_);
    _exit(run_server(opts_, report, &ctx));
  }
  server_ = pid;
}

void keeper::handle(message m) {
  switch (m.kind) {
    case message_kind::fuse_device:
      if (fuse_fd_ >= 0) close(fuse_fd_);
      fuse_fd_ = m.fd;
      return;
    case message_kind::state_region: {
      std::string error;
      auto region = failover::state_region::map(m.fd, &error);
      if (!region) {
        log_err("the server's state cannot be kept: %s", error.c_str());
        close(m.fd);
        return;
      }
      state_fd_ = m.fd;
      region_ = std::move(region);
      region_->state().keeper_pid.store(int32_t(getpid()));
      region_->state().keeper_alive.store(1);
      return;
    }
    case message_kind::host_data: {
      struct stat st {};
      void *p = fstat(m.fd, &st) == 0 ? mmap(nullptr, size_t(st.st_size), PROT_READ | PROT_WRITE,
                                              MAP_SHARED, m.fd, 0)
                                      : MAP_FAILED;
      if (p == MAP_FAILED) {
        log_err("the server's data cannot be kept: %s", strerror(errno));
        close(m.fd);
        return;
      }
      host_fd_ = m.fd;
      host_data_ = static_cast<std::byte *>(p);
      host_bytes_ = size_t(st.st_size);
      return;
    }
    case message_kind::vram_chunk:
      if (auto it = chunks_.find(m.index); it != chunks_.end()) close(it->second);
      chunks_[m.index] = m.fd;
      return;
    case message_kind::vram_released:
      if (auto it = chunks_.find(m.index); it != chunks_.end()) {
        close(it->second);
        chunks_.erase(it);
      }
      return;
    case message_kind::ready:
      failed_starts_ = 0;
      server_ready_ = true;
      if (!served_) {
        served_ = true;
        std::vector<std::string> warnings;
        for (size_t start = 0; start < m.text.size();) {
          size_t nl = m.text.find('\n', start);
          if (nl == std::string::npos) nl = m.text.size();
          warnings.push_back(m.text.substr(start, nl - start));
          start = nl + 1;
        }
        if (!report_.ready(warnings)) {
          log_info("the start of %s was interrupted; unmounting it", opts_.mountpoint.c_str());
          abandon_mount();
        }
        return;
      }
      if (region_ && death_us_) {
        int64_t took = monotonic_us() - death_us_;
        death_us_ = 0;
        region_->state().last_takeover_us.store(uint64_t(took));
        log_info("server %d took over %s in %lld ms after the last one %s (restart %llu)",
                 int(server_), opts_.mountpoint.c_str(), (long long)(took / 1000),
                 death_.c_str(), (unsigned long long)region_->state().restarts.load());
      }
      return;
    case message_kind::failure:
      last_failure_ = m.text;
      return;
  }
  if (m.fd >= 0) close(m.fd);
}

void keeper::drain_messages() {
  while (auto m = failover::receive_message(control_, true)) handle(std::move(*m));
}

bool keeper::connection_gone() const {
  if (fuse_fd_ < 0) return true;
  pollfd p{fuse_fd_, POLLIN, 0};
  return poll(&p, 1, 0) > 0 && (p.revents & POLLERR);
}

void keeper::abandon_mount() {
  // Nothing was announced, or the user gave up: nothing may stay mounted.
  if (auto err = fuse::unmount(opts_.mountpoint))
    log_err("cannot unmount %s: %s", opts_.mountpoint.c_str(), err->c_str());
}

int keeper::server_exited(int status) {
  server_ = 0;
  drain_messages();  // descriptors the server sent just before it died
  std::string how = describe_exit(status);
  if (!served_) {
    // The first start failed: the user's command says why.
    report_.failure(!last_failure_.empty() ? last_failure_
                                           : "the vramfs server " + how + " during startup");
    if (fuse_fd_ >= 0) abandon_mount();
    return 1;
  }
  if (connection_gone()) {
    log_info("%s is unmounted; the keeper exits", opts_.mountpoint.c_str());
    return 0;
  }
  if (!last_failure_.empty()) how += " (" + last_failure_ + ")";
  last_failure_.clear();
  if (server_ready_) {
    death_us_ = monotonic_us();  // the outage starts: the takeover is timed from here
    death_ = how;
  } else {
    ++failed_starts_;
  }
  if (failed_mode_) {
    log_err("the failed-mode server of %s %s; starting it again", opts_.mountpoint.c_str(),
            how.c_str());
    restart_at_us_ = monotonic_us() + 1000000;
    return -1;
  }
  log_err("the vramfs server of %s %s; starting another", opts_.mountpoint.c_str(), how.c_str());
  if (region_) region_->state().restarts.fetch_add(1);
  ++takeovers_;
  if (failed_starts_ >= max_failed_starts) {
    log_err("%d servers in a row died before they served %s: giving up on its memory",
            failed_starts_, opts_.mountpoint.c_str());
    failed_mode_ = true;
  }
  // The first restart at once; then back off, so that a server that cannot
  // start does not spin.
  restart_at_us_ = monotonic_us() + (failed_starts_ ? (100000 << std::min(failed_starts_, 5)) : 0);
  return -1;
}

void keeper::stop_signal(const char *name) {
  if (!served_) {
    log_warn("ignoring %s: %s is still starting", name, opts_.mountpoint.c_str());
    return;
  }
  uint64_t opens = region_ ? region_->state().data_opens.load() : 0;
  if (opens) {
    log_warn("refusing %s: %s/%s is open %llu time(s) (a loop device or swap uses it); stop with "
             "'vramswap stop', or swapoff, losetup -d and umount %s first",
             name, opts_.mountpoint.c_str(), opts_.name.c_str(), (unsigned long long)opens,
             opts_.mountpoint.c_str());
    return;
  }
  if (auto err = fuse::unmount(opts_.mountpoint))
    log_warn("refusing %s: cannot unmount %s: %s", name, opts_.mountpoint.c_str(), err->c_str());
  else
    log_info("%s: unmounted %s", name, opts_.mountpoint.c_str());
}

int keeper::run() {
  if (!set_up()) return 1;
  start_server();
  for (;;) {
    int timeout = -1;
    if (restart_at_us_) {
      int64_t due = restart_at_us_ - monotonic_us();
      if (due <= 0) {
        if (server_ == 0) start_server();
        continue;
      }
      timeout = int(due / 1000) + 1;
    }
    pollfd fds[2] = {{signals_, POLLIN, 0}, {control_, POLLIN, 0}};
    if (poll(fds, 2, timeout) < 0) {
      if (errno != EINTR) log_err("the keeper's poll failed: %s", strerror(errno));
      continue;
    }
    if (fds[1].revents & POLLIN) drain_messages();
    if (!(fds[0].revents & POLLIN)) continue;
    signalfd_siginfo info;
    if (read(signals_, &info, sizeof info) != ssize_t(sizeof info)) continue;
    switch (info.ssi_signo) {
      case SIGCHLD: {
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
          if (pid == server_)
            if (int done = server_exited(status); done >= 0) return done;
        break;
      }
      case SIGTERM: stop_signal("SIGTERM"); break;
      case SIGINT: stop_signal("SIGINT"); break;
      case SIGHUP: stop_signal("SIGHUP"); break;
    }
  }
}

}  // namespace

int run_keeper(const options &opts, startup_report &report) {
  keeper k(opts, report);
  return k.run();
}

}  // namespace vramfs
