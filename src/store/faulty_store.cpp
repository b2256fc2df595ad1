#include "store/faulty_store.h"

#include "common/fault_injection.h"
#include "common/log.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <chrono>
#include <thread>

namespace vramfs {

void faulty_store::lose(const char *why) {
  if (!lost_.exchange(true))
    log_err("%s store: %s; every request now fails with EIO", inner_->backend(), why);
}

int faulty_store::after_submit(int err) {
  if (err) return err;
  if (fault_injection::copy_is_sticky_failure()) {
    lose("injected device loss");
    return -EIO;
  }
  if (fault_injection::copy_fails()) {
    log_err_limited("%s store: injected copy failure", inner_->backend());
    return -EIO;
  }
  return 0;
}

int faulty_store::submit_read(store_channel &ch, uint64_t offset, void *dst, size_t len) {
  if (lost_) return -EIO;
  return after_submit(inner_->submit_read(ch, offset, dst, len));
}

int faulty_store::submit_write(store_channel &ch, uint64_t offset, const void *src, size_t len) {
  if (lost_) return -EIO;
  return after_submit(inner_->submit_write(ch, offset, src, len));
}

int faulty_store::wait(store_channel &ch) {
  // The copies queued before a fault are waited for all the same: their
  // buffers are reused once this returns.
  int err = inner_->wait(ch);
  if (!lost_ && fault_injection::wait_stalls()) {
    std::this_thread::sleep_for(copy_timeout());
    auto seconds = std::chrono::duration<double>(copy_timeout()).count();
    char why[96];
    snprintf(why, sizeof why, "copies did not finish within %g s (copy_timeout, injected stall)",
             seconds);
    lose(why);
  }
  return lost_ ? -EIO : err;
}

int faulty_store::ensure_backed(uint64_t offset, uint64_t len) {
  if (lost_) return -EIO;
  if (offset > max_size() || len > max_size() - offset) return -EINVAL;
  std::lock_guard lock(backing_mutex_);
  const uint64_t chunk = chunk_size();
  for (uint64_t at = offset / chunk * chunk; at < offset + len; at += chunk) {
    uint64_t before = inner_->held_bytes();
    uint64_t piece = std::min(chunk, max_size() - at);
    if (int err = inner_->ensure_backed(at, piece)) return err;
    if (inner_->held_bytes() > before && fault_injection::alloc_fails()) {
      inner_->release(at, piece);
      return -ENOSPC;
    }
  }
  return 0;
}

}  // namespace vramfs
