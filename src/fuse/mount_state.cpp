#include "fuse/mount_state.h"

namespace vramfs {

mount_state::mount_state() {
  clock_gettime(CLOCK_REALTIME, &mounted_at);
  data_mtime = data_ctime = mounted_at;
}

}  // namespace vramfs
