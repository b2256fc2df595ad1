#include "daemon/keeper.h"

#include "common/log.h"
#include "common/monotonic_clock.h"
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
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace vramfs {
namespace {

using failover::message;
using failover::message_kind;

// Microseconds of the clock the servers time their first answer by: the
// takeover's length is the difference of the two.
int64_t monotonic_us() { return int64_t(monotonic_ns() / 1000); }

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

// Servers in a row that died before they served, or soon after (a server
// that dies on a request the kernel resends to every successor): then no
// server can serve this memory, and the mount goes into failed mode.
constexpr int max_quick_deaths = 5;
// A server that served this long before it died was not crash-looping:
// well above a death on the first resent request, below the pauses
// between the kills of the failover tests.
constexpr int64_t quick_death_us = 250000;
// Standby servers in a row that died before they were ready: then the
// mount runs without one (the log says why).
constexpr int max_standby_failures = 3;

// One server process and the keeper's end of its control channel.
struct child {
  pid_t pid = 0;
  int control = -1;
  bool ready = false;      // serving: it said ready; standby: standby_ready
  int64_t ready_us = 0;    // when it said ready
  std::string failure;     // what it said before it died
  explicit operator bool() const { return pid != 0; }
};

class keeper {
 public:
  keeper(const options &opts, startup_report &report) : opts_(opts), report_(report) {}
  ~keeper();
  int run();

 private:
  bool set_up();
  // Forks a server: the first one, a cold takeover (standby false), or a
  // standby.  false when fork failed.
  bool start_child(child &c, bool standby);
  void start_server();
  void start_standby();
  bool standby_wanted() const;
  void set_standby_state(standby_state s);
  void handle_serving(message m);
  void handle_standby(message m);
  void drain(child &c, bool serving);
  void close_child(child &c);
  void kill_standby();
  // Returns an exit status when the keeper is done, -1 to go on.
  int server_exited(int status);
  void standby_exited(int status);
  void stop_signal(const char *name);
  bool connection_gone() const;
  void abandon_mount();

  const options &opts_;
  startup_report &report_;
  int signals_ = -1;
  child serving_, standby_;
  bool served_ = false;  // the first server was ready once
  bool failed_mode_ = false;
  int quick_deaths_ = 0;        // servers in a row that died before serving long
  int standby_failures_ = 0;    // standbys in a row that died before they were ready
  bool standby_given_up_ = false;
  uint64_t takeovers_ = 0;
  int64_t death_us_ = 0;          // when the server died, for the takeover time
  int64_t restart_at_us_ = 0;     // a delayed server start is due then; 0: none
  int64_t standby_at_us_ = 0;     // a delayed standby start is due then; 0: none
  std::string death_;

  // A chunk of the store's memory: VRAM, which the descriptor alone keeps,
  // or RAM (a memfd), mapped here too so that it stays resident and locked
  // while no server runs.
  struct kept_chunk {
    int fd = -1;
    void *mapping = nullptr;
    size_t bytes = 0;
  };
  void keep_chunk(uint64_t index, int fd, uint64_t bytes);
  void drop_chunk(uint64_t index);

  int fuse_fd_ = -1, state_fd_ = -1;
  std::unique_ptr<failover::state_region> region_;
  std::map<uint64_t, kept_chunk> chunks_;  // chunk index -> what keeps it
};

keeper::~keeper() {
  kill_standby();
  while (!chunks_.empty()) drop_chunk(chunks_.begin()->first);
  for (int fd : {fuse_fd_, state_fd_, serving_.control, signals_})
    if (fd >= 0) close(fd);
}

void keeper::keep_chunk(uint64_t index, int fd, uint64_t bytes) {
  drop_chunk(index);
  kept_chunk c{fd, nullptr, size_t(bytes)};
  if (bytes) {
    // Populated and locked as it is mapped (mlockall(MCL_FUTURE)).
    c.mapping = mmap(nullptr, c.bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (c.mapping == MAP_FAILED) {
      c.mapping = nullptr;
      log_err("cannot map memory chunk %llu of %s: %s; it stays in RAM only while a server "
              "maps it",
              (unsigned long long)index, opts_.mountpoint.c_str(), strerror(errno));
    } else if (madvise(c.mapping, c.bytes, MADV_DONTFORK) != 0) {
      // A server forked from here would inherit the mapping and, never
      // knowing of it, keep the chunk's memory after it was given back.
      log_warn("cannot keep memory chunk %llu of %s out of the servers started from here: %s",
               (unsigned long long)index, opts_.mountpoint.c_str(), strerror(errno));
    }
  }
  chunks_[index] = c;
}

void keeper::drop_chunk(uint64_t index) {
  auto it = chunks_.find(index);
  if (it == chunks_.end()) return;
  if (it->second.mapping) munmap(it->second.mapping, it->second.bytes);
  close(it->second.fd);
  chunks_.erase(it);
}

bool keeper::set_up() {
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

bool keeper::start_child(child &c, bool standby) {
  auto channel = failover::make_channel();
  if (!channel) {
    log_err("cannot create a control socket for a vramfs server: %s", strerror(errno));
    return false;
  }
  auto [keeper_end, server_end] = *channel;
  keeper_context ctx;
  ctx.control = server_end;
  ctx.keeper_pid = getpid();
  ctx.takeover = served_;
  ctx.standby = standby;
  ctx.takeover_number = takeovers_ + (standby ? 1 : 0);
  ctx.fuse_fd = fuse_fd_;
  ctx.region = region_.get();
  for (auto &[index, kept] : chunks_) ctx.chunks.emplace_back(index, kept.fd);
  ctx.failed_mode = failed_mode_ && !standby;
  pid_t pid = fork();
  if (pid < 0) {
    log_err("cannot fork a vramfs server: %s", strerror(errno));
    close(keeper_end);
    close(server_end);
    return false;
  }
  if (pid == 0) {
    // The server: the keeper's loop, its other channels and its answer to
    // the user are not its.
    close(keeper_end);
    close(signals_);
    for (int fd : {serving_.control, standby_.control})
      if (fd >= 0) close(fd);
    bool daemonized = report_.daemonized();
    report_.forget_parent();
    if (daemonized) detach_from_terminal();
    control_report report(server_end);
    _exit(run_server(opts_, report, &ctx));
  }
  close(server_end);
  c = child{};
  c.pid = pid;
  c.control = keeper_end;
  return true;
}

void keeper::start_server() {
  restart_at_us_ = 0;
  if (!start_child(serving_, false)) restart_at_us_ = monotonic_us() + 1000000;
}

bool keeper::standby_wanted() const {
  return opts_.standby && served_ && !failed_mode_ && !standby_given_up_ && region_ &&
         region_->state().standby.load() != standby_state::unavailable;
}

void keeper::set_standby_state(standby_state s) {
  if (region_ && region_->state().standby.load() != standby_state::unavailable)
    region_->state().standby.store(s);
}

void keeper::start_standby() {
  standby_at_us_ = 0;
  if (standby_ || !standby_wanted()) return;
  if (!start_child(standby_, true)) {
    standby_at_us_ = monotonic_us() + 1000000;
    return;
  }
  set_standby_state(standby_state::starting);
}

void keeper::close_child(child &c) {
  if (c.control >= 0) close(c.control);
  c.control = -1;
  c.pid = 0;
}

void keeper::kill_standby() {
  if (!standby_) return;
  kill(standby_.pid, SIGKILL);
  waitpid(standby_.pid, nullptr, 0);
  close_child(standby_);
  set_standby_state(standby_state::off);
}

void keeper::handle_serving(message m) {
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
    case message_kind::vram_chunk:
      keep_chunk(m.index, m.fd, m.value);
      // The standby maps it too, so that it can take over at once.
      if (standby_)
        failover::send_message(standby_.control, m.kind, m.index, m.value, "", m.fd);
      return;
    case message_kind::vram_released:
      drop_chunk(m.index);
      // Its mapping in the standby would keep the memory from the device.
      if (standby_) failover::send_message(standby_.control, m.kind, m.index);
      return;
    case message_kind::ready:
      serving_.ready = true;
      serving_.ready_us = monotonic_us();
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
          return;
        }
      } else if (region_ && death_us_) {
        int64_t took = monotonic_us() - death_us_;
        death_us_ = 0;
        region_->state().last_takeover_us.store(uint64_t(took));
        log_info("server %d took over %s in %lld ms after the last one %s (restart %llu)",
                 int(serving_.pid), opts_.mountpoint.c_str(), (long long)(took / 1000),
                 death_.c_str(), (unsigned long long)region_->state().restarts.load());
      }
      // The next takeover is prepared now, after a crash loop's pause.
      if (!standby_ && !standby_at_us_)
        standby_at_us_ = monotonic_us() + (quick_deaths_ ? (100000 << std::min(quick_deaths_, 5)) : 0);
      return;
    case message_kind::failure:
      serving_.failure = m.text;
      break;
    case message_kind::standby_ready:
    case message_kind::go:
      break;
  }
  if (m.fd >= 0) close(m.fd);
}

void keeper::handle_standby(message m) {
  switch (m.kind) {
    case message_kind::standby_ready:
      standby_.ready = true;
      standby_failures_ = 0;
      set_standby_state(standby_state::ready);
      log_debug("standby server %d of %s is ready", int(standby_.pid), opts_.mountpoint.c_str());
      break;
    case message_kind::failure: standby_.failure = m.text; break;
    default: break;
  }
  if (m.fd >= 0) close(m.fd);
}

void keeper::drain(child &c, bool serving) {
  if (c.control < 0) return;
  while (auto m = failover::receive_message(c.control, true)) {
    if (serving) handle_serving(std::move(*m));
    else handle_standby(std::move(*m));
    if (c.control < 0) return;
  }
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
  drain(serving_, true);  // descriptors the server sent just before it died
  std::string how = describe_exit(status);
  child dead = std::exchange(serving_, child{});
  close_child(dead);
  if (!served_) {
    // The first start failed: the user's command says why.
    report_.failure(!dead.failure.empty() ? dead.failure
                                          : "the vramfs server " + how + " during startup");
    if (fuse_fd_ >= 0) abandon_mount();
    return 1;
  }
  if (connection_gone()) {
    kill_standby();
    log_info("%s is unmounted; the keeper exits", opts_.mountpoint.c_str());
    return 0;
  }
  if (!dead.failure.empty()) how += " (" + dead.failure + ")";
  int64_t now = monotonic_us();
  if (region_) region_->state().last_death_us.store(uint64_t(now));
  if (dead.ready) {
    death_us_ = now;  // the outage starts: the takeover is timed from here
    death_ = how;
  }
  // A crash loop: servers that die before they serve, or on the requests
  // the kernel resends to each successor, soon after they start serving.
  if (!dead.ready || now - dead.ready_us < quick_death_us) ++quick_deaths_;
  else quick_deaths_ = 0;
  if (failed_mode_) {
    log_err("the failed-mode server of %s %s; starting it again", opts_.mountpoint.c_str(),
            how.c_str());
    restart_at_us_ = now + 1000000;
    return -1;
  }
  log_err("the vramfs server of %s %s; starting another", opts_.mountpoint.c_str(), how.c_str());
  if (region_) region_->state().restarts.fetch_add(1);
  ++takeovers_;
  if (quick_deaths_ >= max_quick_deaths) {
    log_err("%d servers in a row died before they served %s or soon after: giving up on its "
            "memory",
            quick_deaths_, opts_.mountpoint.c_str());
    failed_mode_ = true;
    kill_standby();
  }
  if (standby_ && !failed_mode_) {
    // Prepared ahead: it takes over as soon as it reads this (at once if
    // it is ready; once it is, if it is still starting).
    if (failover::send_message(standby_.control, message_kind::go) == 0) {
      serving_ = standby_;
      serving_.ready = false;
      standby_ = child{};
      set_standby_state(standby_state::off);
      return -1;
    }
    kill_standby();
  }
  // A cold start: the first at once; then back off, so that a server that
  // cannot start does not spin.
  restart_at_us_ = now + (quick_deaths_ > 1 ? (100000 << std::min(quick_deaths_ - 1, 5)) : 0);
  return -1;
}

void keeper::standby_exited(int status) {
  drain(standby_, false);
  std::string why = !standby_.failure.empty() ? standby_.failure : describe_exit(status);
  bool was_ready = standby_.ready;
  child dead = std::exchange(standby_, child{});
  close_child(dead);
  set_standby_state(standby_state::off);
  if (!was_ready && ++standby_failures_ >= max_standby_failures) {
    standby_given_up_ = true;
    log_err("no standby server could start for %s (%s): running without one, so a takeover "
            "starts a new server",
            opts_.mountpoint.c_str(), why.c_str());
    return;
  }
  log_err("the standby server of %s %s; starting another", opts_.mountpoint.c_str(), why.c_str());
  standby_at_us_ = monotonic_us() + 1000000;
}

void keeper::stop_signal(const char *name) {
  if (!served_) {
    log_warn("ignoring %s: %s is still starting", name, opts_.mountpoint.c_str());
    return;
  }
  uint64_t opens = region_ ? region_->state().data_opens() : 0;
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
  if (!serving_) {
    report_.failure(std::string("cannot fork the vramfs server: ") + strerror(errno));
    return 1;
  }
  for (;;) {
    int64_t now = monotonic_us();
    if (restart_at_us_ && restart_at_us_ <= now && !serving_) start_server();
    if (standby_at_us_ && standby_at_us_ <= now) start_standby();
    int timeout = -1;
    for (int64_t due : {restart_at_us_, standby_at_us_})
      if (due) {
        int ms = int(std::max<int64_t>(due - now, 0) / 1000) + 1;
        timeout = timeout < 0 ? ms : std::min(timeout, ms);
      }
    pollfd fds[3] = {{signals_, POLLIN, 0}, {serving_.control, POLLIN, 0},
                     {standby_.control, POLLIN, 0}};
    if (poll(fds, 3, timeout) < 0) {
      if (errno != EINTR) log_err("the keeper's poll failed: %s", strerror(errno));
      continue;
    }
    if (fds[1].revents & POLLIN) drain(serving_, true);
    if (fds[2].revents & POLLIN) drain(standby_, false);
    if (!(fds[0].revents & POLLIN)) continue;
    signalfd_siginfo info;
    if (read(signals_, &info, sizeof info) != ssize_t(sizeof info)) continue;
    switch (info.ssi_signo) {
      case SIGCHLD: {
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
          if (pid == serving_.pid) {
            if (int done = server_exited(status); done >= 0) return done;
          } else if (pid == standby_.pid) {
            standby_exited(status);
          }
        }
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
