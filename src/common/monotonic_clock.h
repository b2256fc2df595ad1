// The one clock that times requests, waits and log rate limits:
// CLOCK_MONOTONIC in nanoseconds (never steps back, counts no suspend).
#pragma once

#include <cstdint>
#include <ctime>

namespace vramfs {

inline uint64_t monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000 + uint64_t(ts.tv_nsec);
}

}  // namespace vramfs
