#include "common/memlock.h"

#include <sys/resource.h>

#include <cstdio>
#include <cstring>

namespace vramfs {
namespace {

// VmLck of this process in KiB: what mlockall has locked so far (the
// program, its libraries, its heap), or -1 when unknown.
long locked_kib() {
  FILE *f = fopen("/proc/self/status", "re");
  if (!f) return -1;
  char line[256];
  long kib = -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "VmLck:", 6) == 0) {
      kib = strtol(line + 6, nullptr, 10);
      break;
    }
  fclose(f);
  return kib;
}

}  // namespace

std::string memory_limit_hint() {
  rlimit limit{};
  if (getrlimit(RLIMIT_MEMLOCK, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return "";
  std::string hint = " (the memlock limit is " + std::to_string(limit.rlim_cur / 1024) + " KiB";
  // A small request can fail too: the daemon's own code and libraries are
  // locked first, and count against the same limit.
  if (long kib = locked_kib(); kib >= 0)
    hint += ", of which " + std::to_string(kib) + " KiB are locked already by vramfs itself";
  return hint + ", and it could not be raised: run vramfs as root)";
}

}  // namespace vramfs
