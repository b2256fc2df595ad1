#include "cache/extent_map.h"

namespace vramfs {
extent_map::extent_map(uint64_t blocks)
    : extent_map(blocks, nullptr, true) {}

extent_map::extent_map(uint64_t blocks, std::atomic<uint64_t> *memory, bool fresh)
    : blocks_(blocks) {
  uint64_t count = words_for(blocks);
  if (!memory) {
    own_ = std::make_unique<std::atomic<uint64_t>[]>(count);
    memory = own_.get();
  }
  data_ = memory;
  preallocated_ = memory + count / 2;
  if (fresh)
    for (uint64_t i = 0; i < count; ++i) memory[i].store(0);
  recount();
}

void extent_map::recount() {
  uint64_t populated = 0;
  for (uint64_t i = 0; i < words_for(blocks_) / 2; ++i)
    populated += uint64_t(__builtin_popcountll(data_[i].load()));
  populated_ = populated;
}

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
