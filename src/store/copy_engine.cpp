#include "store/copy_engine.h"

#include "common/log.h"

#include <cerrno>
#include <cstring>
#include <thread>

namespace vramfs {

// In store/copy_kernel.cu.
cudaError_t launch_copy_engine(engine_abi::shared_area *area, engine_abi::grid_state *grid,
                               unsigned slots, uint64_t epoch, uint64_t park_ns,
                               cudaStream_t stream);

namespace {

// Orders this thread's accesses to the pinned memory the GPU reads and
// writes: the partner is a device, not another thread, so a C++ fence is
// not the tool (and ThreadSanitizer refuses it).  x86 keeps stores in
// order, and loads too; the compiler must not move them.
inline void order_with_gpu() {
#if defined(__x86_64__) || defined(__i386__)
  asm volatile("" ::: "memory");
#elif defined(__aarch64__)
  asm volatile("dmb sy" ::: "memory");
#else
  __sync_synchronize();
#endif
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace

std::unique_ptr<copy_engine> copy_engine::create(std::chrono::nanoseconds park_after,
                                                 std::string *why, engine_abi::launcher launch) {
  std::unique_ptr<copy_engine> e(new copy_engine);
  e->park_after_ = park_after;
  e->launch_ = launch ? launch : launch_copy_engine;
  void *area = nullptr;
  cudaError_t err = cudaHostAlloc(&area, sizeof(engine_abi::shared_area),
                                  cudaHostAllocPortable | cudaHostAllocMapped);
  if (err == cudaSuccess) {
    e->area_ = static_cast<engine_abi::shared_area *>(area);
    memset(area, 0, sizeof(engine_abi::shared_area));
    void *grid = nullptr;
    err = cudaMalloc(&grid, sizeof(engine_abi::grid_state));
    e->grid_ = static_cast<engine_abi::grid_state *>(grid);
  }
  if (err == cudaSuccess) err = cudaStreamCreateWithFlags(&e->stream_, cudaStreamNonBlocking);
  if (err != cudaSuccess) {
    cudaGetLastError();
    *why = std::string("cannot set up the copy engine: ") + cudaGetErrorString(err);
    return nullptr;
  }
  return e;
}

copy_engine::~copy_engine() {
  if (abandoned_) {
    // A kernel still running stops by itself once idle: stop is set.
    if (area_) area_->stop = 1;
    return;
  }
  if (stream_) {
    // Ask a running kernel to leave, and give it a moment: a GPU that no
    // longer answers is not waited for.
    if (area_) area_->stop = 1;
    auto start = std::chrono::steady_clock::now();
    while (cudaStreamQuery(stream_) == cudaErrorNotReady &&
           std::chrono::steady_clock::now() - start < std::chrono::seconds(2))
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    cudaStreamDestroy(stream_);
  }
  if (grid_) cudaFree(grid_);
  if (area_) cudaFreeHost(area_);
}

int copy_engine::take_slot() {
  unsigned n = slots_taken_.fetch_add(1, std::memory_order_relaxed);
  if (n < engine_abi::max_slots) return int(n);
  slots_taken_.store(engine_abi::max_slots, std::memory_order_relaxed);
  return -1;
}

bool copy_engine::add(int slot, void *dst, const void *src, size_t len) {
  slot_state &s = slots_[slot];
  if (s.pending == engine_abi::max_batch) return false;
  engine_abi::request &r = area_->requests[slot];
  engine_abi::copy_desc &d = s.pending ? r.rest[s.pending - 1] : r.first;
  ++s.pending;
  d.dst = reinterpret_cast<uint64_t>(dst);
  d.src = reinterpret_cast<uint64_t>(src);
  d.len = len;
  return true;
}

bool copy_engine::relaunch() {
  std::lock_guard lock(launch_mutex_);
  if (disabled_) return false;
  uint64_t epoch = launched_epoch_.load(std::memory_order_relaxed);
  if (area_->parked_epoch != epoch) return true;  // another thread relaunched it
  unsigned slots = std::min(slots_taken_.load(std::memory_order_relaxed), engine_abi::max_slots);
  cudaError_t err =
      launch_(area_, grid_, slots, epoch + 1, uint64_t(park_after_.count()), stream_);
  if (err != cudaSuccess) {
    cudaGetLastError();
    disabled_ = true;
    log_err("the GPU copy engine cannot start (%s); copies use the DMA engines",
            cudaGetErrorString(err));
    return false;
  }
  launched_slots_.store(slots, std::memory_order_relaxed);
  launched_epoch_.store(epoch + 1, std::memory_order_release);
  return true;
}

int copy_engine::run(int slot, std::chrono::nanoseconds limit) {
  slot_state &s = slots_[slot];
  if (!s.pending) return 0;
  // No kernel that polls this slot: a failed launch, a parked kernel (it
  // starts again for the next batch; this one does not wait for that), or
  // a slot taken after the running kernel started.
  if (disabled()) return -ENODEV;
  if (parked()) {
    relaunch();
    return -ENODEV;
  }
  if (unsigned(slot) >= launched_slots_.load(std::memory_order_acquire)) return -ENODEV;
  engine_abi::request &r = area_->requests[slot];
  r.count = s.pending;
  uint64_t seq = ++s.seq;
  r.seq_again = seq;
  // The batch is in host memory before the number that posts it.
  order_with_gpu();
  r.seq = seq;
  s.pending = 0;
  auto start = std::chrono::steady_clock::now();
  for (unsigned i = 1;; ++i) {
    if (area_->done[slot].seq == seq) {
      order_with_gpu();  // what the copies wrote is read after the word
      return 0;
    }
    if (i % 64) {
      cpu_relax();
      continue;
    }
    auto waited = std::chrono::steady_clock::now() - start;
    if (waited > limit) return -ETIMEDOUT;
    // The kernel may have parked between the post and its last poll: a
    // new launch serves what it left.  If none can start, no kernel runs,
    // and the batch goes back to the caller whole.
    if (parked() && !relaunch()) {
      s.seq = area_->done[slot].seq;
      r.seq_again = s.seq;
      r.seq = s.seq;
      s.pending = unsigned(r.count);
      return -ENODEV;
    }
    // A copy takes microseconds; a long wait backs off to spare the CPU.
    if (waited > std::chrono::microseconds(50))
      std::this_thread::sleep_for(std::min<std::chrono::nanoseconds>(waited / 8,
                                                                    std::chrono::milliseconds(1)));
  }
}

}  // namespace vramfs
