// Locked memory: what the daemon's allocations of it run into.
#pragma once

#include <string>

namespace vramfs {

// When an allocation of locked memory failed: " (...)" naming the memlock
// limit if it, rather than the machine, is what ran out; else "".
std::string memory_limit_hint();

}  // namespace vramfs
