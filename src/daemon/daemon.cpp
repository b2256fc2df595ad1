#include "daemon/daemon.h"

#include "common/log.h"

#include "config.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif

namespace vramfs {
namespace {

std::string errno_text(int err = errno) { return strerror(err); }

// Undoes the octal escapes (\040 for a space) of /proc/self/mountinfo.
std::string unescape_mount_path(const char *s) {
  std::string out;
  for (; *s; ++s) {
    if (s[0] == '\\' && s[1] >= '0' && s[1] <= '7' && s[2] && s[3]) {
      out += char((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
      s += 3;
    } else {
      out += *s;
    }
  }
  return out;
}

std::optional<std::string> mounted_type(const std::string &path) {
  FILE *f = fopen("/proc/self/mountinfo", "re");
  if (!f) return std::nullopt;
  char *line = nullptr;
  size_t cap = 0;
  std::optional<std::string> type;
  while (getline(&line, &cap, f) > 0) {
    char mnt[4096], fstype[256];
    // id parent major:minor root mountpoint ... - fstype source options
    if (sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1) continue;
    const char *sep = strstr(line, " - ");
    if (!sep || sscanf(sep + 3, "%255s", fstype) != 1) continue;
    if (unescape_mount_path(mnt) == path) type = fstype;  // the last one is on top
  }
  free(line);
  fclose(f);
  return type;
}

}  // namespace

std::optional<std::string> resolve_mountpoint(std::string *path) {
  struct stat st;
  if (stat(path->c_str(), &st) != 0)
    return "mountpoint " + *path + ": " + errno_text();
  if (!S_ISDIR(st.st_mode)) return "mountpoint " + *path + " is not a directory";
  char real[PATH_MAX];
  if (!realpath(path->c_str(), real)) return "mountpoint " + *path + ": " + errno_text();
  auto type = mounted_type(real);
  if (type && *type == "fuse.vramfs")
    return "a vramfs is already mounted on " + std::string(real);
  *path = real;
  return std::nullopt;
}

void startup_report::daemonize() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    fprintf(stderr, "vramfs: cannot create a pipe: %s\n", strerror(errno));
    exit(1);
  }
  pid_t pid = fork();
  if (pid < 0) {
    fprintf(stderr, "vramfs: cannot fork: %s\n", strerror(errno));
    exit(1);
  }
  if (pid > 0) {
    // The parent: the user's command returns when the mount is usable or
    // failed, with the daemon's own message.
    close(fds[1]);
    std::string message;
    char buf[512];
    ssize_t n;
    while ((n = read(fds[0], buf, sizeof buf)) != 0) {
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) break;
      message.append(buf, size_t(n));
    }
    if (message.rfind("ok", 0) == 0) {
      // Warnings follow "ok", one a line.
      size_t start = message.find('\n');
      while (start != std::string::npos) {
        size_t end = message.find('\n', start + 1);
        std::string line = message.substr(start + 1, end == std::string::npos ? end : end - start - 1);
        if (!line.empty()) fprintf(stderr, "vramfs: warning: %s\n", line.c_str());
        start = end;
      }
      exit(0);
    }
    if (message.empty()) {
      int status = 0;
      waitpid(pid, &status, 0);
      message = WIFSIGNALED(status)
                    ? "the daemon was killed by signal " + std::to_string(WTERMSIG(status)) +
                          " during startup"
                    : "the daemon exited during startup";
    }
    fprintf(stderr, "vramfs: %s\n", message.c_str());
    exit(1);
  }
  close(fds[0]);
  fd_ = fds[1];
  daemonized_ = true;
  // A parent killed by Ctrl-C must not kill the daemon with SIGPIPE when
  // it reports: the write fails instead, and the daemon undoes the start.
  signal(SIGPIPE, SIG_IGN);
  setsid();
  if (chdir("/") != 0) { /* "/" always exists; nothing to do */ }
}

void detach_from_terminal() {
  // From here on nothing reads the terminal: log to syslog, and point the
  // standard descriptors at /dev/null.
  log_to_syslog(true);
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null >= 0) {
    dup2(null, 0);
    dup2(null, 1);
    dup2(null, 2);
    close(null);
  }
}

void startup_report::forget_parent() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

bool startup_report::ready(const std::vector<std::string> &warnings) {
  if (fd_ < 0) {
    for (const std::string &w : warnings) log_warn("%s", w.c_str());
    return true;
  }
  std::string message = "ok";
  for (const std::string &w : warnings) message += "\n" + w;
  detach_from_terminal();
  // The log keeps the warnings too, for whoever reads it later.
  for (const std::string &w : warnings) log_warn("%s", w.c_str());
  bool told = write(fd_, message.data(), message.size()) == ssize_t(message.size());
  close(fd_);
  fd_ = -1;
  return told;
}

void startup_report::failure(const std::string &message) {
  if (fd_ < 0) {
    fprintf(stderr, "vramfs: %s\n", message.c_str());
    return;
  }
  if (write(fd_, message.data(), message.size()) < 0) { /* the parent is gone */ }
  close(fd_);
  fd_ = -1;
}

std::optional<std::string> lock_memory() {
#ifdef VRAMFS_SANITIZED
  // AddressSanitizer reserves terabytes of shadow memory: it cannot be
  // locked.  The sanitizer build is for tests, never for real swap; main()
  // warns about it.
  return std::nullopt;
#else
  // The limit is irrelevant with CAP_IPC_LOCK, which some containers grant
  // without CAP_SYS_RESOURCE: only mlockall() failing is fatal.
  rlimit unlimited{RLIM_INFINITY, RLIM_INFINITY};
  int limit_err = setrlimit(RLIMIT_MEMLOCK, &unlimited) == 0 ? 0 : errno;
  if (mlockall(MCL_CURRENT | MCL_FUTURE) != 0)
    return "cannot lock memory: " + errno_text() +
           (limit_err ? " (and raising RLIMIT_MEMLOCK failed: " + errno_text(limit_err) + ")"
                      : std::string()) +
           "; vramfs must run as root: a swap daemon must lock its memory";
  return std::nullopt;
#endif
}

std::optional<std::string> become_io_flusher() {
  if (prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) != 0)
    return "cannot set PR_SET_IO_FLUSHER: " + errno_text() +
           " (needs CAP_SYS_RESOURCE and Linux 5.6 or newer)";
  return std::nullopt;
}

std::optional<std::string> protect_from_oom() {
  int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return "cannot open /proc/self/oom_score_adj: " + errno_text();
  bool ok = write(fd, "-1000", 5) == 5;
  int err = errno;
  close(fd);
  if (!ok) return "cannot set oom_score_adj to -1000: " + errno_text(err);
  return std::nullopt;
}

namespace {
sigset_t stop_set() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGUSR1);  // only used to end the stop_signals thread
  return set;
}
}  // namespace

void limit_thread_stacks() {
#ifdef VRAMFS_SANITIZED
  // Sanitizers need deeper stacks (ThreadSanitizer refuses to start threads
  // with these), and the sanitizer build locks no memory anyway.
  return;
#endif
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 512 * 1024);
  pthread_setattr_default_np(&attr);
  pthread_attr_destroy(&attr);
}

void block_stop_signals() {
  sigset_t set = stop_set();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

stop_signals::stop_signals(std::function<std::optional<std::string>(const char *)> on_stop)
    : on_stop_(std::move(on_stop)), thread_([this] { run(); }) {}

stop_signals::~stop_signals() {
  done_ = true;
  pthread_kill(thread_.native_handle(), SIGUSR1);
  thread_.join();
}

void stop_signals::run() {
  sigset_t set = stop_set();
  while (!done_) {
    siginfo_t info;
    int sig = sigwaitinfo(&set, &info);
    if (sig < 0 || sig == SIGUSR1) continue;
    const char *name = sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : "SIGHUP";
    if (auto refusal = on_stop_(name)) log_warn("%s", refusal->c_str());
  }
}

}  // namespace vramfs
