// How the dev transport's threads wait for the next request without a
// wake-up per request, and without taking CPUs from the processes that
// fault (leader/follower).
//
// A thread that finishes a request first tries to read the next one at
// once (the descriptor is non-blocking): under load, requests are taken
// without anyone sleeping, and each one found waiting wakes one more
// thread.  When nothing is queued, one thread, the leader, watches
// /dev/fuse; the others sleep until they are woken.  The leader polls
// only while no other thread serves (a lone client) and for busy_poll
// after the last request; otherwise it blocks in poll(2).  So a lone
// client's next request finds a thread already running (the kernel wakes
// no one), at most one CPU polls per mount, never while others serve, and
// with no traffic every thread sleeps.
//
// With busy_poll 0 the threads block in read(2) as before, and the kernel
// wakes one per request.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <span>

namespace vramfs::fuse {

class request_poller {
 public:
  explicit request_poller(unsigned busy_poll_us) : busy_poll_ns_(uint64_t(busy_poll_us) * 1000) {}

  // Makes the descriptor non-blocking when polling; 0 or -errno.
  int attach(int fd);
  // The next request into buf: its length, or -errno from read(2)
  // (-ENODEV once the connection has ended; -EINTR, -ENOENT to retry).
  ssize_t next(int fd, std::span<std::byte> buf);

 private:
  ssize_t lead(int fd, std::span<std::byte> buf);
  void wake_a_follower();
  void follow();

  const uint64_t busy_poll_ns_;
  std::atomic<bool> leader_{false};
  std::atomic<uint64_t> last_request_ns_{0};
  // Followers sleep on this word (a futex through atomic wait).
  std::atomic<uint32_t> wakeups_{0};
  std::atomic<uint32_t> sleepers_{0};
  std::atomic<uint32_t> busy_{0};  // threads serving a request now
};

}  // namespace vramfs::fuse
