// Rounding a size up to a multiple (a page, a chunk, an allocation
// granularity), written once.
#pragma once

#include <cstdint>

namespace vramfs {

constexpr uint64_t round_up(uint64_t value, uint64_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

}  // namespace vramfs
