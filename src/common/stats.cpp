#include "common/stats.h"

#include "store/block_store.h"
#include "cache/extent_map.h"

#include <unistd.h>

namespace vramfs {

std::string render_stats(const stats &s, const block_store &store, const extent_map &extents,
                         uint64_t block_size, uint64_t cache_bytes, uint64_t dirty_lines,
                         uint64_t open_count) {
  std::string out;
  auto line = [&out](const char *key, const std::string &value) {
    out += key;
    out += ' ';
    out += value;
    out += '\n';
  };
  auto number = [&line](const char *key, uint64_t value) { line(key, std::to_string(value)); };
  auto counter = [&number](const char *key, const stats::counter &c) {
    number(key, c.load(std::memory_order_relaxed));
  };
  uint64_t data = extents.blocks_with_data() * block_size;
  if (data > store.size()) data = store.size();  // the last block may be partial

  // Who serves the mount: vramswap and the tests find the daemon here.
  number("pid", uint64_t(getpid()));
  line("backend", store.backend());
  line("device", store.device());
  number("size_bytes", store.size());
  number("data_bytes", data);
  number("vram_bytes", std::string(store.backend()) == "cuda" ? store.held_bytes() : 0);
  number("held_bytes", store.held_bytes());
  line("lazy", store.lazy() ? "1" : "0");
  number("block_bytes", block_size);
  number("cache_bytes", cache_bytes);
  number("dirty_bytes", dirty_lines * block_size);
  number("open_count", open_count);
  counter("reads", s.reads);
  counter("writes", s.writes);
  counter("read_bytes", s.read_bytes);
  counter("write_bytes", s.write_bytes);
  counter("discards", s.discards);
  counter("discard_bytes", s.discard_bytes);
  counter("cache_hits", s.cache_hits);
  counter("cache_misses", s.cache_misses);
  counter("flushes", s.flushes);
  counter("fsyncs", s.fsyncs);
  counter("errors", s.errors);
  counter("read_ns", s.read_ns);
  counter("write_ns", s.write_ns);
  counter("copy_waits", s.copy_waits);
  counter("copy_wait_ns", s.copy_wait_ns);
  number("memory_locked", s.memory_locked);
  number("io_flusher", s.io_flusher);
  number("oom_protected", s.oom_protected);
  return out;
}

}  // namespace vramfs
