// A read(2) of /dev/fuse that fails, for test-faults: preloaded into the
// daemon, it makes the Nth read of /dev/fuse fail with EIO before it takes
// any request, so that the transports' retry is tested while they carry no
// hook of their own.
//
//   LD_PRELOAD=tests/fail-fuse-read.so FAIL_FUSE_READ_AT=N vramfs ...
#include <dlfcn.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

using read_fn = ssize_t (*)(int, void *, size_t);

long fail_at() {
  static const long at = [] {
    const char *text = getenv("FAIL_FUSE_READ_AT");
    return text ? strtol(text, nullptr, 10) : 0L;
  }();
  return at;
}

bool is_fuse_device(int fd) {
  char link[64], target[16];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, target, sizeof target);
  return n == 9 && memcmp(target, "/dev/fuse", 9) == 0;
}

std::atomic<long> fuse_reads{0};
std::atomic<bool> failed{false};

}  // namespace

extern "C" ssize_t read(int fd, void *buf, size_t len) {
  static const auto real = reinterpret_cast<read_fn>(dlsym(RTLD_NEXT, "read"));
  if (fail_at() > 0 && !failed.load(std::memory_order_relaxed) && is_fuse_device(fd) &&
      fuse_reads.fetch_add(1) + 1 == fail_at()) {
    failed = true;
    errno = EIO;
    return -1;
  }
  return real(fd, buf, len);
}
