// How the uring transport's threads wait for their next request without a
// wake-up per request, and without taking CPUs from the processes that
// fault: the io_uring counterpart of request_poller.
//
// Each thread owns one ring and sleeps in io_uring_enter until the kernel
// puts a request on it.  With busy_poll, the thread that answered the
// mount's latest request first polls its own completion queue instead,
// yielding between polls, for busy_poll after that request, and only while
// no other thread serves.  A lone client whose next request comes back to
// the same queue finds its thread already running; when the next request
// lands on another queue, that queue's thread (woken as usual) answers it
// and takes the lead over, so at most one CPU polls per mount.  Under
// load, when requests overlap, no thread spins at all; with no traffic
// every thread sleeps.
#pragma once

#include <atomic>
#include <cstdint>

namespace vramfs::fuse {

class ring_poller {
 public:
  explicit ring_poller(unsigned busy_poll_us) : busy_poll_ns_(uint64_t(busy_poll_us) * 1000) {}

  bool enabled() const { return busy_poll_ns_ != 0; }
  // Around each request the thread `me` (any number unique to the thread)
  // answers.
  void begin_request() { busy_.fetch_add(1, std::memory_order_relaxed); }
  void end_request(unsigned me);
  // Asked by thread `me` whose completion queue is empty: whether to poll
  // it once more (true) or sleep.
  bool keep_polling(unsigned me) const;

 private:
  const uint64_t busy_poll_ns_;
  // The thread that answered the latest request, plus one (0: none yet).
  std::atomic<unsigned> leader_{0};
  std::atomic<uint64_t> last_request_ns_{0};
  std::atomic<uint32_t> busy_{0};  // threads answering a request now
};

}  // namespace vramfs::fuse
