#include "extent_map.h"

namespace vramfs {
namespace {

std::unique_ptr<std::atomic<uint64_t>[]> zeroed_words(uint64_t blocks) {
  auto w = std::make_unique<std::atomic<uint64_t>[]>((blocks + 63) / 64);
  for (uint64_t i = 0; i < (blocks + 63) / 64; ++i) w[i].store(0);
  return w;
}

}  // namespace

extent_map::extent_map(uint64_t blocks)
    : blocks_(blocks), data_(zeroed_words(blocks)), preallocated_(zeroed_words(blocks)) {}

bool extent_map::set(uint64_t block) {
  if (data_[block / 64].fetch_or(bit(block), std::memory_order_acq_rel) & bit(block)) return false;
  populated_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

bool extent_map::clear(uint64_t block) {
  preallocated_[block / 64].fetch_and(~bit(block), std::memory_order_acq_rel);
  if (!(data_[block / 64].fetch_and(~bit(block), std::memory_order_acq_rel) & bit(block)))
    return false;
  populated_.fetch_sub(1, std::memory_order_relaxed);
  return true;
}

bool extent_map::range_unused(uint64_t first, uint64_t count) const {
  uint64_t end = first + count > blocks_ ? blocks_ : first + count;
  for (uint64_t b = first; b < end;) {
    if (b % 64 == 0 && end - b >= 64) {
      if (data_[b / 64].load(std::memory_order_acquire) |
          preallocated_[b / 64].load(std::memory_order_acquire))
        return false;
      b += 64;
    } else {
      if (test(data_, b) || test(preallocated_, b)) return false;
      ++b;
    }
  }
  return true;
}

uint64_t extent_map::next(uint64_t from, bool want_hole) const {
  for (uint64_t b = from; b < blocks_;) {
    uint64_t word = data_[b / 64].load(std::memory_order_acquire);
    if (want_hole) word = ~word;
    word &= ~uint64_t(0) << (b % 64);  // only bits at or after b
    if (word) {
      uint64_t found = b / 64 * 64 + uint64_t(__builtin_ctzll(word));
      return found < blocks_ ? found : blocks_;
    }
    b = (b / 64 + 1) * 64;
  }
  return blocks_;
}

}  // namespace vramfs
