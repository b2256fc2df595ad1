#include "common/prepare_grow.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace vramfs {

int prepare_grow(const std::string &file, uint64_t size, std::string *error) {
  int fd = open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    *error = "cannot open " + file + ": " + strerror(err);
    return -err;
  }
  int result = ioctl(fd, prepare_grow_ioctl, &size) == 0 ? 0 : -errno;
  if (result) {
    *error = file + ": " +
             (result == -ENOTTY  ? std::string("not a vramfs data file, or a vramfs without --prepare-grow")
              : result == -EFBIG ? "it may not grow to " + std::to_string(size) + " bytes, past its max_size="
                                 : std::string(strerror(-result)));
  }
  close(fd);
  return result;
}

}  // namespace vramfs
