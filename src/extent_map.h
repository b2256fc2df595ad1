// Which blocks of the data file hold data.  The file is sparse: a block that
// was never written, or was discarded, reads as zeros and holds no memory.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

namespace vramfs {

// One bit per block.  Bits are atomic so that statfs, getattr and the
// discard path may read them without locks; each block's bit is only ever
// changed by a thread holding that block's cache set lock, which is what
// keeps a block's bit consistent with its cached data.
class extent_map {
 public:
  explicit extent_map(uint64_t blocks);

  uint64_t blocks() const { return blocks_; }
  bool has_data(uint64_t block) const;
  // Returns true when the bit changed.
  bool set(uint64_t block);
  bool clear(uint64_t block);
  // Whether no block in [first, first + count) holds data.
  bool range_empty(uint64_t first, uint64_t count) const;
  uint64_t blocks_with_data() const { return populated_.load(std::memory_order_relaxed); }

 private:
  uint64_t blocks_;
  std::unique_ptr<std::atomic<uint64_t>[]> words_;
  std::atomic<uint64_t> populated_{0};
};

}  // namespace vramfs
