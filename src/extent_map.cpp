#include "extent_map.h"

namespace vramfs {

extent_map::extent_map(uint64_t blocks)
    : blocks_(blocks), words_(new std::atomic<uint64_t>[(blocks + 63) / 64]) {
  for (uint64_t i = 0; i < (blocks + 63) / 64; ++i) words_[i].store(0);
}

bool extent_map::has_data(uint64_t block) const {
  return words_[block / 64].load(std::memory_order_acquire) & (uint64_t(1) << (block % 64));
}

bool extent_map::set(uint64_t block) {
  uint64_t bit = uint64_t(1) << (block % 64);
  if (words_[block / 64].fetch_or(bit, std::memory_order_acq_rel) & bit) return false;
  populated_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

bool extent_map::clear(uint64_t block) {
  uint64_t bit = uint64_t(1) << (block % 64);
  if (!(words_[block / 64].fetch_and(~bit, std::memory_order_acq_rel) & bit)) return false;
  populated_.fetch_sub(1, std::memory_order_relaxed);
  return true;
}

bool extent_map::range_empty(uint64_t first, uint64_t count) const {
  uint64_t end = first + count > blocks_ ? blocks_ : first + count;
  for (uint64_t b = first; b < end;) {
    if (b % 64 == 0 && end - b >= 64) {
      if (words_[b / 64].load(std::memory_order_acquire)) return false;
      b += 64;
    } else {
      if (has_data(b)) return false;
      ++b;
    }
  }
  return true;
}

}  // namespace vramfs
