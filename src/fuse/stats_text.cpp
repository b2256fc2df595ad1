#include "fuse/stats_text.h"

#include "cache/extent_map.h"
#include "cache/page_cache.h"
#include "fuse/operations.h"
#include "store/block_store.h"

#include <unistd.h>

#include <cstring>

namespace vramfs::fuse {
namespace {

using text = std::string;

text number(uint64_t v) { return std::to_string(v); }

// A counter's value: the sum of the serving threads' shards.
template <stats::counter stats::shard::*Which>
text total(const filesystem &fs) {
  return number(fs.counters.total(Which));
}

uint64_t data_bytes(const filesystem &fs) {
  uint64_t data = fs.extents.blocks_with_data() * fs.cache.block_size();
  return std::min(data, fs.store.size());  // the last block may be partial
}

text standby_text(const mount_state &m) {
  switch (m.standby.load()) {
    case standby_state::off: return "off";
    case standby_state::starting: return "starting";
    case standby_state::ready: return "ready";
    case standby_state::unavailable: break;
  }
  return "unavailable";
}

const stats_key keys[] = {
    // Who serves the mount: vramswap and the tests find the daemon here.
    {"pid", "pid", "the serving process",
     [](const filesystem &) { return number(uint64_t(getpid())); }},
    {"backend", "text", "cuda (GPU memory) or host (RAM)",
     [](const filesystem &fs) { return text(fs.store.backend()); }},
    {"device", "text", "the GPU (name and PCI bus) or ram",
     [](const filesystem &fs) { return fs.store.device(); }},
    {"size_bytes", "bytes", "the data file's size now (truncate changes it)",
     [](const filesystem &fs) { return number(fs.store.size()); }},
    {"max_size_bytes", "bytes", "the most the data file may grow to (max_size=)",
     [](const filesystem &fs) { return number(fs.store.max_size()); }},
    {"chunk_bytes", "bytes", "memory is taken and given back in chunks of this size",
     [](const filesystem &fs) { return number(fs.store.chunk_size()); }},
    {"resizes", "count", "times the data file was grown or shrunk",
     [](const filesystem &fs) { return number(fs.state.resizes.load()); }},
    {"last_resize_from_bytes", "bytes", "the size before the last resize (0: none yet)",
     [](const filesystem &fs) { return number(fs.state.last_resize_from.load()); }},
    {"last_resize_to_bytes", "bytes", "the size after the last resize (0: none yet)",
     [](const filesystem &fs) { return number(fs.state.last_resize_to.load()); }},
    {"last_resize_time", "s", "when the last resize was, in seconds since 1970 (0: none yet)",
     [](const filesystem &fs) { return number(uint64_t(fs.state.last_resize_time.load())); }},
    {"data_bytes", "bytes", "blocks that hold data (the rest reads as zeros)",
     [](const filesystem &fs) { return number(data_bytes(fs)); }},
    {"vram_bytes", "bytes", "GPU memory held for the data (0 with backend=host)",
     [](const filesystem &fs) {
       return number(strcmp(fs.store.backend(), "cuda") == 0 ? fs.store.held_bytes() : 0);
     }},
    {"held_bytes", "bytes", "memory held for the data, GPU or RAM",
     [](const filesystem &fs) { return number(fs.store.held_bytes()); }},
    {"lazy", "flag", "memory is taken on first write and given back on discard",
     [](const filesystem &fs) { return text(fs.store.lazy() ? "1" : "0"); }},
    {"block_bytes", "bytes", "the cache line and allocation unit (block=)",
     [](const filesystem &fs) { return number(fs.cache.block_size()); }},
    {"cache_bytes", "bytes", "the pinned host cache",
     [](const filesystem &fs) { return number(fs.cache.line_count() * fs.cache.block_size()); }},
    {"dirty_bytes", "bytes", "cache lines with data not yet written back",
     [](const filesystem &fs) { return number(fs.cache.dirty_lines() * fs.cache.block_size()); }},
    {"open_count", "count", "opens of the data file not yet released (a loop device holds one)",
     [](const filesystem &fs) { return number(fs.state.data_opens()); }},
    {"reads", "count", "READ requests answered", total<&stats::shard::reads>},
    {"writes", "count", "WRITE requests answered", total<&stats::shard::writes>},
    {"read_bytes", "bytes", "bytes read", total<&stats::shard::read_bytes>},
    {"write_bytes", "bytes", "bytes written", total<&stats::shard::write_bytes>},
    {"discards", "count", "discards (fallocate punch hole or zero range)",
     total<&stats::shard::discards>},
    {"discard_bytes", "bytes", "bytes discarded", total<&stats::shard::discard_bytes>},
    {"cache_hits", "count", "block lookups the cache answered", total<&stats::shard::cache_hits>},
    {"cache_misses", "count", "block lookups that copied from the store",
     total<&stats::shard::cache_misses>},
    {"flushes", "count", "cache lines written back to the store", total<&stats::shard::flushes>},
    {"fsyncs", "count", "fsync requests", total<&stats::shard::fsyncs>},
    {"errors", "count", "requests answered with an I/O error", total<&stats::shard::errors>},
    {"read_ns", "ns", "time spent answering READs", total<&stats::shard::read_ns>},
    {"write_ns", "ns", "time spent answering WRITEs", total<&stats::shard::write_ns>},
    {"copy_waits", "count", "waits for store copies", total<&stats::shard::copy_waits>},
    {"copy_wait_ns", "ns", "time spent waiting for store copies",
     total<&stats::shard::copy_wait_ns>},
    {"copy_path", "text",
     "how copies travel: engine (a GPU kernel for small ones, DMA for the rest), dma, memcpy",
     [](const filesystem &fs) { return fs.store.copy_path(); }},
    {"engine_copies", "count", "copies done by the GPU copy engine, since this server started",
     [](const filesystem &fs) { return number(fs.store.copies().engine); }},
    {"dma_copies", "count", "copies done by the DMA engines, since this server started",
     [](const filesystem &fs) { return number(fs.store.copies().dma); }},
    {"engine_launches", "count", "launches of the copy engine (it parks when idle)",
     [](const filesystem &fs) { return number(fs.store.copies().launches); }},
    {"memory_locked", "flag", "the daemon's memory is locked (mlockall)",
     [](const filesystem &fs) { return number(fs.counters.memory_locked); }},
    {"io_flusher", "flag", "the daemon's threads carry PR_SET_IO_FLUSHER",
     [](const filesystem &fs) { return number(fs.counters.io_flusher); }},
    {"oom_protected", "flag", "the daemon's oom_score_adj is -1000",
     [](const filesystem &fs) { return number(fs.counters.oom_protected); }},
    {"transport", "text", "dev (/dev/fuse) or uring (FUSE over io_uring)",
     [](const filesystem &fs) { return text(fs.state.terms.io_uring ? "uring" : "dev"); }},
    {"uring_refused", "count", "transport=uring: ring entries the kernel refused to register",
     [](const filesystem &fs) { return number(fs.state.uring_refused.load()); }},
    {"failover", "flag", "a keeper replaces a server that dies (-o failover)",
     [](const filesystem &fs) { return number(fs.state.keeper_pid.load() != 0); }},
    {"keeper_pid", "pid", "the keeper process (0 without failover)",
     [](const filesystem &fs) { return number(uint64_t(fs.state.keeper_pid.load())); }},
    {"keeper_alive", "flag", "the keeper still runs",
     [](const filesystem &fs) { return number(fs.state.keeper_alive.load()); }},
    {"restarts", "count", "servers started to replace one that died",
     [](const filesystem &fs) { return number(fs.state.restarts.load()); }},
    {"last_takeover_ms", "ms", "from the last server's death to its successor serving",
     [](const filesystem &fs) { return number(fs.state.last_takeover_us.load() / 1000); }},
    {"last_takeover_us", "us", "the same, in microseconds",
     [](const filesystem &fs) { return number(fs.state.last_takeover_us.load()); }},
    {"last_death_us", "us",
     "when the keeper learnt of the last server's death (CLOCK_MONOTONIC), to time a takeover "
     "against a kill",
     [](const filesystem &fs) { return number(fs.state.last_death_us.load()); }},
    {"last_pause_ms", "ms", "from the last server's death to its successor's first answer",
     [](const filesystem &fs) { return number(fs.state.last_pause_us.load() / 1000); }},
    {"standby", "text",
     "off, starting, ready (a second server waits to take over at once), or unavailable",
     [](const filesystem &fs) { return standby_text(fs.state); }},
    {"state", "text", "serving, or failed (no server could take over: every request fails)",
     [](const filesystem &fs) { return text(fs.state.failed.load() ? "failed" : "serving"); }},
};

}  // namespace

std::span<const stats_key> stats_keys() { return keys; }

std::string render_stats_text(const filesystem &fs) {
  std::string out;
  for (const stats_key &k : keys) {
    out += k.name;
    out += ' ';
    out += k.value(fs);
    out += '\n';
  }
  return out;
}

std::string describe_stats_keys() {
  std::string out;
  for (const stats_key &k : keys) out += std::string(k.name) + ' ' + k.unit + ' ' + k.meaning + '\n';
  return out;
}

}  // namespace vramfs::fuse
