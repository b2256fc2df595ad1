#include "fuse/request_poller.h"

#include "common/monotonic_clock.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>

namespace vramfs::fuse {
namespace {

ssize_t read_request(int fd, std::span<std::byte> buf) {
  ssize_t n = read(fd, buf.data(), buf.size());
  return n < 0 ? -errno : n;
}

// Whether this thread is serving a request it took (between two next()).
thread_local bool serving = false;

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
  if (serving) {
    serving = false;
    busy_.fetch_sub(1);
  }
  ssize_t n;
  for (;;) {
    // Whatever is queued is taken at once, by whoever is awake.  Finding
    // a request already waiting means load: one more thread is woken, as
    // the kernel would, so that queued requests are served side by side.
    n = read_request(fd, buf);
    if (n != -EAGAIN) {
      if (n >= 0) wake_a_follower();
      break;
    }
    if (!leader_.exchange(true)) {
      n = lead(fd, buf);
      leader_.store(false);
      if (n == -ENODEV) {
        // The end of the connection: every thread must see it.
        wakeups_.fetch_add(1);
        wakeups_.notify_all();
      } else if (n >= 0 && busy_.load()) {
        // Others are serving too: someone must watch /dev/fuse while
        // this thread serves.  A lone request needs no one.
        wake_a_follower();
      }
      break;
    }
    follow();
  }
  if (n >= 0) {
    last_request_ns_.store(monotonic_ns(), std::memory_order_relaxed);
    serving = true;
    busy_.fetch_add(1);
  }
  return n;
}

ssize_t request_poller::lead(int fd, std::span<std::byte> buf) {
  for (;;) {
    ssize_t n = read_request(fd, buf);
    if (n != -EAGAIN) return n;
    // A lone client whose last request came lately: its next one is
    // likely microseconds away, and polling answers it without a wake-up.
    // Yielding between polls hands this CPU to anything runnable on it (a
    // faulting process, a loop worker).  Under load, when other threads
    // serve, polling would only take CPU from them: sleep instead.
    if (!busy_.load(std::memory_order_relaxed) &&
        monotonic_ns() - last_request_ns_.load(std::memory_order_relaxed) < busy_poll_ns_) {
      sched_yield();
      continue;
    }
    // Sleep until the kernel has a request, or the connection ends.
    pollfd p{fd, POLLIN, 0};
    while (poll(&p, 1, -1) < 0 && errno == EINTR) {
    }
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
