#include "common/stats.h"

namespace vramfs {

unsigned stats::thread_shard() {
  static std::atomic<unsigned> next{0};
  thread_local unsigned index = next.fetch_add(1, std::memory_order_relaxed) % shard_count;
  return index;
}

uint64_t stats::total(counter shard::*which) const {
  uint64_t sum = 0;
  for (const shard &s : shards) sum += (s.*which).load(std::memory_order_relaxed);
  return sum;
}

}  // namespace vramfs
