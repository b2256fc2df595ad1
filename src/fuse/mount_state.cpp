#include "fuse/mount_state.h"

namespace vramfs {

mount_state::mount_state() {
  clock_gettime(CLOCK_REALTIME, &mounted_at);
  data_mtime = data_ctime = mounted_at;
  for (auto &h : data_handles) h.store(0, std::memory_order_relaxed);
}

uint64_t mount_state::open_data(uint64_t id) {
  // Each step is one atomic update of one slot: a server that dies between
  // two leaves either the handle or nothing, and the resent request finds
  // the handle or takes one.
  for (auto &h : data_handles)
    if (h.load() == id) return id;
  for (auto &h : data_handles) {
    uint64_t free_slot = 0;
    if (h.compare_exchange_strong(free_slot, id)) return id;
  }
  return 0;
}

void mount_state::release_data(uint64_t handle) {
  for (auto &h : data_handles) {
    uint64_t held = handle;
    if (h.compare_exchange_strong(held, 0)) return;
  }
}

uint64_t mount_state::data_opens() const {
  uint64_t n = 0;
  for (const auto &h : data_handles) n += h.load(std::memory_order_relaxed) != 0;
  return n;
}

}  // namespace vramfs
