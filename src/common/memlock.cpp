#include "common/memlock.h"

#include <sys/resource.h>

namespace vramfs {

std::string memory_limit_hint() {
  rlimit limit{};
  if (getrlimit(RLIMIT_MEMLOCK, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return "";
  return " (the memlock limit is " + std::to_string(limit.rlim_cur / 1024) +
         " KiB and could not be raised: run vramfs as root)";
}

}  // namespace vramfs
