// Which blocks of the data file hold data.  The file is sparse: a block that
// was never written, or was discarded, reads as zeros and holds no memory.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

namespace vramfs {

// Two bits per block: whether it holds data, and whether fallocate() asked
// for its memory without writing it (it reads as zeros but, in lazy mode,
// keeps its chunk from being given back).  Bits are atomic so that statfs,
// getattr and the discard path may read them without locks; each block's
// data bit is only ever changed by a thread holding that block's cache set
// lock, which is what keeps it consistent with the block's cached data.
class extent_map {
 public:
  explicit extent_map(uint64_t blocks);
  // Over memory of the caller's (shared with a successor process): the
  // words_for(blocks) words at `words`, zeroed when `fresh`, else taken
  // over as a predecessor left them.
  extent_map(uint64_t blocks, std::atomic<uint64_t> *words, bool fresh);
  static uint64_t words_for(uint64_t blocks) { return 2 * ((blocks + 63) / 64); }

  uint64_t blocks() const { return blocks_; }
  bool has_data(uint64_t block) const { return test(data_, block); }
  // Returns true when the bit changed.
  bool set(uint64_t block);
  bool clear(uint64_t block);
  // fallocate()'s reservation; clear() drops it too.
  void set_preallocated(uint64_t block) { preallocated_[block / 64].fetch_or(bit(block)); }
  // Whether no block in [first, first + count) holds data or is preallocated:
  // then its memory may be given back.
  bool range_unused(uint64_t first, uint64_t count) const;
  // The first block at or after `from` that holds data (or does not);
  // blocks() when there is none.  For SEEK_DATA and SEEK_HOLE.
  uint64_t next_with_data(uint64_t from) const { return next(from, false); }
  uint64_t next_without_data(uint64_t from) const { return next(from, true); }
  uint64_t blocks_with_data() const { return populated_.load(std::memory_order_relaxed); }
  // Counts the blocks with data again: a standby server's map, built while
  // its predecessor still changed the bits, once that one is dead.
  void recount();

 private:
  using owned_words = std::unique_ptr<std::atomic<uint64_t>[]>;
  static uint64_t bit(uint64_t block) { return uint64_t(1) << (block % 64); }
  static bool test(const std::atomic<uint64_t> *w, uint64_t block) {
    return w[block / 64].load(std::memory_order_acquire) & bit(block);
  }
  uint64_t next(uint64_t from, bool want_hole) const;

  uint64_t blocks_;
  owned_words own_;  // the owning constructor's memory
  std::atomic<uint64_t> *data_, *preallocated_;
  std::atomic<uint64_t> populated_{0};
};

}  // namespace vramfs
