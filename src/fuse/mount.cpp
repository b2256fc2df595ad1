#include "fuse/mount.h"

#include "common/log.h"
#include "common/options.h"

#include "config.h"

#include <fuse_lowlevel.h>

#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <vector>

#ifdef VRAMFS_SANITIZED
// libfuse frees its copy of the mountpoint only in fuse_session_unmount,
// which vramfs never calls: it unmounts by itself, and a failover server
// must not unmount at all.  One string a process, reported at exit.
extern "C" const char *__lsan_default_suppressions() { return "leak:fuse_session_mount\n"; }
#endif

namespace vramfs::fuse {
namespace {

// The arguments libfuse parses: ours that concern the mount, then the user's.
class fuse_arguments {
 public:
  explicit fuse_arguments(const options &opts) {
    strings_ = {"vramfs", "-o",
                "subtype=vramfs,fsname=" + (opts.source.empty() ? "vramfs" : opts.source) +
                    ",default_permissions"};
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

// libfuse's own messages: captured while options are checked, logged later.
std::string captured;

void capture_message(fuse_log_level, const char *fmt, va_list ap) {
  char line[512];
  vsnprintf(line, sizeof line, fmt, ap);
  captured += line;
}

void log_message_from_libfuse(fuse_log_level level, const char *fmt, va_list ap) {
  char line[512];
  vsnprintf(line, sizeof line, fmt, ap);
  size_t len = strlen(line);
  while (len && line[len - 1] == '\n') line[--len] = 0;
  log_message(level <= FUSE_LOG_ERR       ? log_level::error
              : level <= FUSE_LOG_WARNING ? log_level::warning
              : level <= FUSE_LOG_INFO    ? log_level::info
                                          : log_level::debug,
              "%s", line);
}

// A session that only mounts: no operations, since libfuse never reads a
// request here.
fuse_session *new_session(fuse_arguments &args) {
  static const fuse_lowlevel_ops no_operations{};
  return fuse_session_new(args.get(), &no_operations, sizeof no_operations, nullptr);
}

// libfuse's first message line, without its "fuse: " prefix.
std::string first_line(std::string text) {
  if (text.rfind("fuse: ", 0) == 0) text.erase(0, 6);
  if (size_t nl = text.find('\n'); nl != std::string::npos) text.resize(nl);
  return text;
}

}  // namespace

std::optional<std::string> mount::check_options(const options &opts) {
  fuse_arguments args(opts);
  captured.clear();
  fuse_set_log_func(capture_message);
  fuse_session *se = new_session(args);
  fuse_set_log_func(log_message_from_libfuse);
  if (se) {
    fuse_session_destroy(se);
    return std::nullopt;
  }
  std::string text = first_line(captured);
  return (text.empty() ? std::string("invalid FUSE options") : text) + " (see vramfs --help)";
}

std::unique_ptr<mount> mount::create(const options &opts, std::string *error) {
  fuse_arguments args(opts);
  fuse_session *se = new_session(args);
  if (!se) {
    *error = "invalid FUSE options";
    return nullptr;
  }
  captured.clear();
  fuse_set_log_func(capture_message);
  int res = fuse_session_mount(se, opts.mountpoint.c_str());
  fuse_set_log_func(log_message_from_libfuse);
  if (res != 0) {
    fuse_session_destroy(se);
    std::string why = first_line(captured);
    *error = "cannot mount on " + opts.mountpoint + (why.empty() ? "" : ": " + why);
    return nullptr;
  }
  return std::unique_ptr<mount>(new mount(se, opts.mountpoint));
}

int mount::fd() const { return fuse_session_fd(session_); }

std::optional<std::string> mount::abandon() {
  // Never lazily: a lazy unmount would strand whatever opened the file.
  return fuse::unmount(mountpoint_);
}

mount::~mount() {
  // Closes the descriptor; libfuse unmounts only in fuse_session_unmount,
  // which is not called: the mount ends with the connection.
  fuse_session_destroy(session_);
}

std::optional<std::string> unmount(const std::string &mountpoint) {
  if (geteuid() == 0) {
    if (umount2(mountpoint.c_str(), UMOUNT_NOFOLLOW) == 0) return std::nullopt;
    return std::string(strerror(errno));
  }
  // Not root: the setuid helper of libfuse does it for the mounting user.
  pid_t pid = fork();
  if (pid == 0) {
    execlp("fusermount3", "fusermount3", "-u", "-q", mountpoint.c_str(), (char *)nullptr);
    _exit(127);
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) < 0) return std::string(strerror(errno));
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return std::nullopt;
  return "fusermount3 -u failed";
}

}  // namespace vramfs::fuse
