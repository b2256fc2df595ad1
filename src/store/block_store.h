// The block store: an address space of bytes held in VRAM (cuda) or RAM
// (host), whose size may change while it serves, up to a maximum fixed when
// it is made.  Only the page cache talks to it.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace vramfs {

struct options;

// A queue of copies owned by one thread: a CUDA stream for the cuda store.
// Copies queued on one channel complete in order.
class store_channel {
 public:
  virtual ~store_channel() = default;
  // The length of the request whose copies the channel queues now (0:
  // none), set by the cache for the request's duration: a store may choose
  // how to copy by it as well as by each copy's own length.
  uint64_t request_bytes = 0;
};

// How a store's copies went, since this process opened it.
struct copy_counts {
  uint64_t engine = 0;    // by the GPU copy engine
  uint64_t dma = 0;       // by the DMA engines (cudaMemcpyAsync)
  uint64_t launches = 0;  // of the copy engine's kernel (it parks when idle)
};

class block_store {
 public:
  virtual ~block_store() = default;

  virtual const char *backend() const = 0;  // "cuda" or "host"
  virtual std::string device() const = 0;   // e.g. "NVIDIA H100 (0000:65:00.0)"
  // The data file's size now: copies past it are refused.
  uint64_t size() const { return size_.load(std::memory_order_acquire); }
  // The most it may grow to (max_size=): the address range, fixed.
  uint64_t max_size() const { return max_size_; }
  // Only page_cache::resize calls it, which orders it against the copies
  // and the memory of the range (see there).  Virtual for decorators
  // (store_decorator.h), which pass it on.
  virtual void set_size(uint64_t bytes) { size_.store(bytes, std::memory_order_release); }
  bool lazy() const { return lazy_; }
  // Memory is taken and given back in whole chunks: in lazy mode as blocks
  // are written and discarded, in both modes when the size changes.
  virtual uint64_t chunk_size() const = 0;
  // Memory held for the data now (VRAM for cuda, RAM for host).
  virtual uint64_t held_bytes() const = 0;
  // Whether the store has failed for good (a lost device, copies that
  // never finished): every copy then answers -EIO at once.
  virtual bool failed() const = 0;
  // How copies travel: "engine" (a resident GPU kernel for small copies,
  // DMA for the rest), "dma", or "memcpy" (RAM); and how many went each way.
  virtual std::string copy_path() const = 0;
  virtual copy_counts copies() const { return {}; }

  // How long wait() lets copies run before it declares the device stalled
  // and the store failed.  A working GPU finishes a 1 MiB copy in well
  // under a millisecond; the default leaves room for a busy one.
  virtual void set_copy_timeout(std::chrono::milliseconds t) { copy_timeout_ = t; }
  std::chrono::milliseconds copy_timeout() const { return copy_timeout_; }

  // Every thread that copies owns one channel, made before the mount is
  // announced so that the I/O path allocates nothing.
  virtual std::unique_ptr<store_channel> open_channel() = 0;
  // A channel for work nobody waits on (the cache's write-back): the cuda
  // store gives it no copy engine slot, so that draining the cache after a
  // burst never keeps a GPU kernel running, and a busy GPU is not polled
  // for it.
  virtual std::unique_ptr<store_channel> open_background_channel() { return open_channel(); }

  // Queue a copy between the store and host memory from alloc_host().  The
  // copy is complete, and the host buffer free to reuse, only once wait() on
  // the same channel has returned 0.  A failed submit or wait answers -EIO
  // (or another negative errno); the range's contents are then unknown.
  // A caller waits after every submit, failed or not: copies queued before
  // a failed one may still be running.  wait() gives up after
  // copy_timeout(): the store is then failed, and the buffers of copies
  // still queued must not be trusted.
  virtual int submit_read(store_channel &ch, uint64_t offset, void *dst, size_t len) = 0;
  virtual int submit_write(store_channel &ch, uint64_t offset, const void *src,
                           size_t len) = 0;
  virtual int wait(store_channel &ch) = 0;

  // Backs [offset, offset + len) (within max_size()) with memory, a whole
  // chunk at a time; -ENOSPC when the device has none left, keeping what it
  // took.  The cache asks in lazy mode as blocks are first written; in
  // reserved mode everything below size() is backed already, and only a
  // resize asks, for the part it adds.
  virtual int ensure_backed(uint64_t offset, uint64_t len) = 0;
  // Gives back the memory of the chunk-aligned range, in either mode.  The
  // caller guarantees that no block in it holds data and that no copy
  // touches it: the cache in lazy mode after a discard, and a resize past
  // the new end.
  virtual void release(uint64_t offset, uint64_t len) = 0;

  // A standby server (-o failover) follows the memory its predecessor
  // takes and gives back: chunk `index`, shared as descriptor fd (which
  // stays the caller's), is mapped here too; forget_chunk() unmaps it again
  // without telling the keeper, which already knows.
  virtual int adopt_chunk(uint64_t /*index*/, int /*fd*/) { return 0; }
  virtual void forget_chunk(uint64_t /*index*/) {}
  // Whether the device admits one process at a time (a GPU in exclusive-
  // process compute mode): then no standby server can wait beside this one.
  virtual bool single_process() const { return false; }

  // Host memory for cache lines and request buffers: page-aligned, locked,
  // and pinned for DMA where the backend copies with DMA.  Never returns
  // nullptr; throws std::bad_alloc.
  virtual void *alloc_host(size_t bytes) = 0;
  virtual void free_host(void *ptr, size_t bytes) = 0;
  // Pins memory that did not come from alloc_host (the cache's lines in
  // memory shared with the keeper) for DMA; a no-op where the backend
  // copies with the CPU.  0 or a negative errno.
  virtual int pin_host(void *ptr, size_t bytes) = 0;
  virtual void unpin_host(void *ptr) = 0;

  // The chunk of a store whose memory a resize gives back (reserved mode,
  // and the memory kept for failover): at most 1/64 of the largest size, so
  // that a shrink holds at most that much past its new end, and few enough
  // chunks (64 to 128) that a takeover maps them quickly; from 2 MiB (the
  // GPU's granularity) to 1 GiB.
  // (Inline: the request fuzzer builds the host store without the rest.)
  static uint64_t resizable_chunk_bytes(uint64_t max_size) {
    constexpr uint64_t mib = uint64_t(1) << 20;
    return std::clamp<uint64_t>(std::bit_floor(std::max<uint64_t>(max_size / 64, 1)), 2 * mib,
                                1024 * mib);
  }

 protected:
  // max_size 0: the same as size.
  block_store(uint64_t size, bool lazy, uint64_t max_size = 0)
      : size_(size), max_size_(max_size > size ? max_size : size), lazy_(lazy) {}

 private:
  std::atomic<uint64_t> size_;
  const uint64_t max_size_;
  bool lazy_;
  std::chrono::milliseconds copy_timeout_{std::chrono::seconds(30)};
};

// With -o failover: the store's memory must outlive this process, so the
// store hands it to the keeper chunk by chunk as it takes it, tells it of
// every chunk it gives back, and on a takeover maps what the keeper holds.
struct store_keeping {
  // A takeover: the store exists already, in the keeper's hands.
  bool takeover = false;
  uint64_t size = 0;       // on a takeover, the largest size the first server chose
  uint64_t file_size = 0;  // and the size now (the shared state's)
  // Chunks as descriptors: VRAM as CUDA shareable handles (cuda_vmm), RAM
  // as memfds (host_store).  bytes: what the keeper maps of the chunk to
  // keep it resident (a memfd's length), 0 for VRAM, which the descriptor
  // alone keeps.
  std::function<int(uint64_t index, int fd, uint64_t bytes)> keep_chunk;
  std::function<void(uint64_t index)> drop_chunk;
  std::vector<std::pair<uint64_t, int>> chunks;  // takeover: index, descriptor
};

// The chunk of memory handed to the keeper: lazy mounts take and give back
// 32 MiB at a time as swap comes and goes; reserved ones resizable_chunk_bytes().
inline uint64_t kept_chunk_bytes(bool lazy, uint64_t max_size) {
  return lazy ? uint64_t(32) << 20 : block_store::resizable_chunk_bytes(max_size);
}

// Creates the store the options ask for, resolving size= against the
// backend's capacity.  On failure returns nullptr with a message for the user
// in *error.
std::unique_ptr<block_store> create_store(const options &opts, std::string *error,
                                          const store_keeping *keeping = nullptr);

}  // namespace vramfs
