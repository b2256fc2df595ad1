#include "fuse/ring_poller.h"

#include "common/monotonic_clock.h"

namespace vramfs::fuse {

void ring_poller::end_request(unsigned me) {
  last_request_ns_.store(monotonic_ns(), std::memory_order_relaxed);
  leader_.store(me + 1, std::memory_order_relaxed);
  busy_.fetch_sub(1, std::memory_order_relaxed);
}

bool ring_poller::keep_polling(unsigned me) const {
  // Only the latest request's thread: the client's next request most
  // likely comes from the CPU that issued the last one.  Others serving
  // means load: their requests keep the CPUs busy, and a spinning thread
  // would only take a CPU from a faulting process or a loop worker.  A
  // quiet spell longer than busy_poll means the client has gone: sleep.
  return leader_.load(std::memory_order_relaxed) == me + 1 &&
         !busy_.load(std::memory_order_relaxed) &&
         monotonic_ns() - last_request_ns_.load(std::memory_order_relaxed) < busy_poll_ns_;
}

}  // namespace vramfs::fuse
