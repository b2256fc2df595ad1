#include "fuse/request_poller.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>

namespace vramfs::fuse {
namespace {

uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000 + uint64_t(ts.tv_nsec);
}

ssize_t read_request(int fd, std::span<std::byte> buf) {
  ssize_t n = read(fd, buf.data(), buf.size());
  return n < 0 ? -errno : n;
}

}  // namespace

int request_poller::attach(int fd) {
  // The flag belongs to the open file, which the keeper and a successor
  // share: set it either way, whatever a predecessor left.
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0) return -errno;
  flags = busy_poll_ns_ ? flags | O_NONBLOCK : flags & ~O_NONBLOCK;
  if (fcntl(fd, F_SETFL, flags) < 0) return -errno;
  return 0;
}

ssize_t request_poller::next(int fd, std::span<std::byte> buf) {
  if (!busy_poll_ns_) return read_request(fd, buf);
  for (;;) {
    // Whatever is queued is taken at once, by whoever is awake.
    ssize_t n = read_request(fd, buf);
    if (n != -EAGAIN) {
      if (n >= 0) last_request_ns_.store(now_ns(), std::memory_order_relaxed);
      return n;
    }
    if (!leader_.exchange(true, std::memory_order_acq_rel)) {
      n = lead(fd, buf);
      leader_.store(false, std::memory_order_release);
      // Someone polls while this thread serves; at the end of the
      // connection everyone must see it.
      if (n == -ENODEV) {
        wakeups_.fetch_add(1);
        wakeups_.notify_all();
      } else {
        wake_a_follower();
      }
      return n;
    }
    follow();
  }
}

ssize_t request_poller::lead(int fd, std::span<std::byte> buf) {
  for (;;) {
    ssize_t n = read_request(fd, buf);
    if (n != -EAGAIN) {
      if (n >= 0) last_request_ns_.store(now_ns(), std::memory_order_relaxed);
      return n;
    }
    // Requests came lately: the next is likely microseconds away, and
    // polling answers it without a wake-up.
    // Yielding between polls hands this CPU to anything runnable on it (a
    // faulting process, a loop worker): polling uses only idle time.
    if (now_ns() - last_request_ns_.load(std::memory_order_relaxed) < busy_poll_ns_) {
      sched_yield();
      continue;
    }
    // Quiet: sleep until the kernel has a request, or the connection ends.
    pollfd p{fd, POLLIN, 0};
    while (poll(&p, 1, -1) < 0 && errno == EINTR) {
    }
    n = read_request(fd, buf);
    if (n >= 0) {
      last_request_ns_.store(now_ns(), std::memory_order_relaxed);
      return n;
    }
    if (n != -EAGAIN) return n;  // another thread took it first: poll on
  }
}

void request_poller::wake_a_follower() {
  if (!sleepers_.load()) return;
  wakeups_.fetch_add(1);
  wakeups_.notify_one();
}

void request_poller::follow() {
  uint32_t seen = wakeups_.load();
  sleepers_.fetch_add(1);
  // The leader may have left meanwhile: then lead instead of sleeping.
  if (leader_.load()) wakeups_.wait(seen);
  sleepers_.fetch_sub(1);
}

}  // namespace vramfs::fuse
