// Daemon life: the steps that keep a swap daemon from waiting on its own
// swap (docs/design.md, rules 1, 6 and 8), in the order main() takes them.
#pragma once

#include <atomic>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace vramfs {

// Checks that the mountpoint exists, is a directory and has no vramfs on
// it already, and makes *path absolute (the daemon changes to /).
std::optional<std::string> resolve_mountpoint(std::string *path);

// Forks.  The parent waits until the child calls report_ready() or
// report_failure(), or dies, and exits with status 0 or 1 accordingly; only
// the child returns.  Nothing CUDA may have run before this (rule 8).
class startup_report {
 public:
  virtual ~startup_report() = default;
  void daemonize();
  // In the foreground these print; once daemonized they tell the parent,
  // which prints the warnings and exits 0, or prints the failure and exits
  // 1.  ready() returns false when the parent is gone: the user gave up on
  // the start (Ctrl-C), so the caller should undo it.
  virtual bool ready(const std::vector<std::string> &warnings);
  virtual void failure(const std::string &message);
  // Whether daemonize() ran: then logs go to syslog once the start is over.
  bool daemonized() const { return daemonized_; }
  // In a process forked from the daemon (the keeper's server): the pipe is
  // the daemon's to answer, not this process's.
  void forget_parent();

 private:
  int fd_ = -1;  // the pipe to the waiting parent, in the child
  bool daemonized_ = false;
};

// Logs to syslog and points the standard descriptors at /dev/null: what a
// daemon does once its start is over.
void detach_from_terminal();

// Raises RLIMIT_MEMLOCK and locks all present and future memory.
std::optional<std::string> lock_memory();
// PR_SET_IO_FLUSHER: reclaim never makes this thread, or any thread it
// creates afterwards, wait on I/O, which may be I/O to this very swap.
std::optional<std::string> become_io_flusher();
// oom_score_adj -1000: the OOM killer never picks the process serving swap.
std::optional<std::string> protect_from_oom();
// Gives every thread created from now on (ours, libfuse's, CUDA's) a small
// stack: with all memory locked, each default 8 MiB stack would be resident.
void limit_thread_stacks();
// Blocks the stop signals in this thread and so in every thread it creates;
// only the stop_signals thread receives them.
void block_stop_signals();

// Receives SIGTERM, SIGINT and SIGHUP and asks on_stop() what to do: it
// returns the refusal to log, or std::nullopt when the daemon may stop.
class stop_signals {
 public:
  explicit stop_signals(std::function<std::optional<std::string>(const char *)> on_stop);
  ~stop_signals();

 private:
  void run();
  std::function<std::optional<std::string>(const char *)> on_stop_;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

}  // namespace vramfs
