#include "store/cuda_store.h"

#include "config.h"

#include "common/log.h"
#include "common/options.h"
#include "store/copy_engine_policy.h"
#include "store/cuda_vmm.h"
#ifdef HAVE_COPY_ENGINE
#include "store/copy_engine.h"
#endif

#include <cuda.h>
#include <cuda_runtime.h>
#include <strings.h>

#include <atomic>
#include <chrono>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <optional>
#include <string>
#include <thread>

namespace vramfs {
namespace {

// The driver API (lazy mode) reports CUresult, the runtime cudaError_t; the
// codes this file tells apart are numbered alike, so both go through the
// functions below.
static_assert(int(CUDA_ERROR_OUT_OF_MEMORY) == int(cudaErrorMemoryAllocation));
static_assert(int(CUDA_ERROR_ILLEGAL_ADDRESS) == int(cudaErrorIllegalAddress));
static_assert(int(CUDA_ERROR_ECC_UNCORRECTABLE) == int(cudaErrorECCUncorrectable));
static_assert(int(CUDA_ERROR_LAUNCH_FAILED) == int(cudaErrorLaunchFailure));
static_assert(int(CUDA_ERROR_NO_DEVICE) == int(cudaErrorNoDevice));
static_assert(int(CUDA_ERROR_UNKNOWN) == int(cudaErrorUnknown));
cudaError_t as_runtime_error(CUresult res) { return static_cast<cudaError_t>(res); }

// Errors after which the context is unusable ("the process must be
// terminated and relaunched") or the device is gone: every later call
// would fail too, or hang.
bool is_sticky(cudaError_t err) {
  switch (err) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorLaunchTimeout:
    case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorAssert:
    case cudaErrorTensorMemoryLeak:
    case cudaErrorECCUncorrectable:
    case cudaErrorNvlinkUncorrectable:
    case cudaErrorContained:
    case cudaErrorExternalDevice:
    case cudaErrorMpsClientTerminated:
    case cudaErrorContextIsDestroyed:
    // Once the device worked, these mean it fell off the bus or the
    // runtime is being torn down.
    case cudaErrorInitializationError:
    case cudaErrorCudartUnloading:
    case cudaErrorNoDevice:
    case cudaErrorDeviceUninitialized:
    case cudaErrorUnknown:
      return true;
    default:
      return false;
  }
}

// The one translation from CUDA errors to errno.
int errno_of(cudaError_t err) {
  if (err == cudaSuccess) return 0;
  return err == cudaErrorMemoryAllocation ? -ENOSPC : -EIO;
}

// A channel's copies: small ones batched for the copy engine's slot,
// others queued on the stream for the DMA engines.  Owned by one thread.
class cuda_channel;

// Every open channel of a store, for the copy counts in .stats.
class channel_registry {
 public:
  void add(cuda_channel *c) {
    std::lock_guard lock(mutex_);
    channels_.push_back(c);
  }
  void remove(cuda_channel *c) {
    std::lock_guard lock(mutex_);
    std::erase(channels_, c);
  }
  copy_counts sum() const;

 private:
  mutable std::mutex mutex_;
  std::vector<cuda_channel *> channels_;
};

class cuda_channel final : public store_channel {
 public:
  cuda_channel(cudaStream_t s, int slot, channel_registry &r)
      : stream(s), engine_slot(slot), registry_(r) {
    registry_.add(this);
  }
  ~cuda_channel() override {
    registry_.remove(this);
    cudaStreamDestroy(stream);
  }
  // Counted by the channel's own thread and read by .stats: a plain load
  // and store, never contended.
  static void count(std::atomic<uint64_t> &c, uint64_t n = 1) {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }

  cudaStream_t stream;
  int engine_slot;          // -1: DMA only
  bool dma_queued = false;  // copies on the stream since the last wait
  std::atomic<uint64_t> engine_copies{0}, dma_copies{0};

 private:
  channel_registry &registry_;
};

copy_counts channel_registry::sum() const {
  std::lock_guard lock(mutex_);
  copy_counts total;
  for (const cuda_channel *c : channels_) {
    total.engine += c->engine_copies.load(std::memory_order_relaxed);
    total.dma += c->dma_copies.load(std::memory_order_relaxed);
  }
  return total;
}

cuda_channel &channel_of(store_channel &ch) { return static_cast<cuda_channel &>(ch); }

// How long the copy engine's kernel keeps polling with no copy to do
// before it parks.  A relaunch costs the next copy some microseconds;
// parking sooner leaves the GPU idle between bursts of swap.
constexpr std::chrono::milliseconds engine_park_after{50};

// What a second process's CUDA context holds on the GPU: 525 MiB on the
// H100 machine (docs/performance.md), with room for other cards.
constexpr uint64_t standby_context_bytes = 640 * MiB;

// Host memory the GPU may reach at its host address: what alloc_host() and
// pin_host() gave out.  The copy engine takes only copies whose host side
// lies in one of these ranges; anything else goes to DMA, which takes any
// memory.  Ranges are added before the mount and removed at teardown; the
// lookup on the I/O path takes no lock.
class pinned_ranges {
 public:
  void add(const void *p, size_t bytes) {
    std::lock_guard lock(add_mutex_);
    unsigned i = count_.load(std::memory_order_relaxed);
    if (i >= capacity) return;  // not found later: DMA
    ranges_[i].start = uintptr_t(p);
    ranges_[i].end = uintptr_t(p) + bytes;
    ranges_[i].live.store(true, std::memory_order_relaxed);
    count_.store(i + 1, std::memory_order_release);
  }
  void remove(const void *p) {
    unsigned n = count_.load(std::memory_order_acquire);
    for (unsigned i = 0; i < n; ++i)
      if (ranges_[i].start == uintptr_t(p)) ranges_[i].live.store(false, std::memory_order_release);
  }
  bool contains(const void *p, size_t len) const {
    uintptr_t a = uintptr_t(p);
    unsigned n = count_.load(std::memory_order_acquire);
    for (unsigned i = 0; i < n; ++i)
      if (a >= ranges_[i].start && a + len <= ranges_[i].end &&
          ranges_[i].live.load(std::memory_order_acquire))
        return true;
    return false;
  }

 private:
  static constexpr unsigned capacity = 1024;
  struct range {
    uintptr_t start = 0, end = 0;
    std::atomic<bool> live{false};
  };
  range ranges_[capacity];
  std::atomic<unsigned> count_{0};
  std::mutex add_mutex_;
};

// Threading: any number of threads copy at once, each on its own channel
// (stream); the store's own state is the failed flag and, in lazy mode, the
// chunk table inside cuda_vmm, which has its own lock.
class cuda_store final : public block_store {
 public:
  cuda_store(uint64_t size, uint64_t max_size, bool lazy, int device, std::string description)
      : block_store(size, lazy, max_size), device_(device), description_(std::move(description)) {}
  ~cuda_store() override;

  // Takes the memory: all of it, or in lazy mode the address range only;
  // with keeping (-o failover), in chunks the keeper holds.
  std::optional<std::string> allocate(const store_keeping *keeping);
  // The copy engine, where opts and the GPU allow it; logs why not.
  // launch: how its kernel starts (nullptr: the real launch).
  void start_engine_if_usable(const options &opts, engine_abi::launcher launch);
  std::string copy_path() const override { return copy_path_; }
  copy_counts copies() const override {
    copy_counts c = channels_.sum();
#ifdef HAVE_COPY_ENGINE
    if (engine_) c.launches = engine_->launches();
#endif
    return c;
  }

  const char *backend() const override { return "cuda"; }
  std::string device() const override { return description_; }
  uint64_t chunk_size() const override { return vmm_ ? vmm_->granularity() : 2 * MiB; }
  uint64_t held_bytes() const override { return vmm_ ? vmm_->held_bytes() : 0; }
  bool failed() const override { return failed_.load(std::memory_order_relaxed); }

  std::unique_ptr<store_channel> open_channel() override { return make_channel(true); }
  std::unique_ptr<store_channel> open_background_channel() override { return make_channel(false); }
  std::unique_ptr<store_channel> make_channel(bool engine);
  int submit_read(store_channel &ch, uint64_t offset, void *dst, size_t len) override;
  int submit_write(store_channel &ch, uint64_t offset, const void *src, size_t len) override;
  int wait(store_channel &ch) override;
  int ensure_backed(uint64_t offset, uint64_t len) override;
  void release(uint64_t offset, uint64_t len) override;
  void *alloc_host(size_t bytes) override;
  void free_host(void *ptr, size_t bytes) override;
  int pin_host(void *ptr, size_t bytes) override;
  void unpin_host(void *ptr) override;
  int adopt_chunk(uint64_t index, int fd) override;
  void forget_chunk(uint64_t index) override;
  bool single_process() const override { return single_process_; }
  void set_single_process(bool v) { single_process_ = v; }

 private:
  std::optional<std::string> allocate_kept(const store_keeping &keeping);
  int bind_thread();
  // 0, or the errno for a failed CUDA call: logged, and a sticky error
  // puts the store into the failed state.  Allocates nothing.
  int check(cudaError_t err, const char *what);
  // Copies still queued after copy_timeout(): the GPU is stalled.
  int fail_stalled(std::chrono::nanoseconds waited);
  int check_copy(uint64_t offset, size_t len);
  int copy(store_channel &ch, char *to, const char *from, size_t len, cudaMemcpyKind kind,
           const char *what);
  // Hands the channel's engine batch to the kernel and waits for it; a
  // batch the engine cannot take is queued for DMA instead.
  int run_engine_batch(cuda_channel &ch);
  // Waits for the copies queued on the channel's stream.
  int wait_dma(cuda_channel &ch);

  const int device_;
  const std::string description_;
  // VRAM in chunks mapped into one range of max_size() addresses: every
  // chunk below size() in reserved mode, those that hold data in lazy mode.
  std::unique_ptr<cuda_vmm> vmm_;
  std::atomic<bool> failed_{false};
  // A sticky error or a stall: the driver is left alone from then on,
  // since its calls would fail or hang.
  std::atomic<bool> device_lost_{false};
  // A sticky error: the context is gone, and with it every queued copy
  // and the copy engine's kernel; nothing more will land anywhere.
  std::atomic<bool> context_dead_{false};
  pinned_ranges pinned_;
  std::string copy_path_ = "dma";
  bool single_process_ = false;
  channel_registry channels_;
#ifdef HAVE_COPY_ENGINE
  std::unique_ptr<copy_engine> engine_;
#endif
};

void cuda_store::start_engine_if_usable(const options &opts, engine_abi::launcher launch) {
#ifdef HAVE_COPY_ENGINE
  if (!opts.copy_engine) {
    log_info("GPU %s: copy_engine=off; copies use the DMA engines", description_.c_str());
    return;
  }
  gpu_facts facts;
  int value = 0;
  if (cudaDeviceGetAttribute(&value, cudaDevAttrKernelExecTimeout, device_) == cudaSuccess)
    facts.kernel_exec_timeout = value != 0;
  if (cudaDeviceGetAttribute(&value, cudaDevAttrCanUseHostPointerForRegisteredMem, device_) ==
      cudaSuccess)
    facts.host_pointers_usable = value != 0;
  if (cudaDeviceGetAttribute(&value, cudaDevAttrComputeCapabilityMajor, device_) == cudaSuccess)
    facts.compute_major = value;
  cudaGetLastError();
  if (auto why = copy_engine_unusable(facts)) {
    log_info("GPU %s: %s", description_.c_str(), why->c_str());
    return;
  }
  std::string why;
  engine_ = copy_engine::create(engine_park_after, &why, launch);
  if (!engine_) {
    log_warn("GPU %s: %s; copies use the DMA engines", description_.c_str(), why.c_str());
    return;
  }
  copy_path_ = "engine";
#else
  (void)opts, (void)launch;
  log_debug("this vramfs was built without the GPU copy engine (no nvcc): copies use DMA");
#endif
}

int cuda_store::bind_thread() {
  // The runtime's current device is per thread; a thread calls in here
  // with its own channel for its whole life, so this is set once per thread.
  thread_local int bound = -1;
  if (bound == device_) return 0;
  if (int err = check(cudaSetDevice(device_), "selecting the device")) return err;
  bound = device_;
  return 0;
}

int cuda_store::check(cudaError_t err, const char *what) {
  if (err == cudaSuccess) return 0;
  if (is_sticky(err)) {
    device_lost_ = context_dead_ = true;
    if (!failed_.exchange(true))
      log_err("GPU %s lost during %s: %s; every request now fails with EIO",
              description_.c_str(), what, cudaGetErrorString(err));
    return -EIO;
  }
  log_err_limited("%s on GPU %s failed: %s", what, description_.c_str(), cudaGetErrorString(err));
  return errno_of(err);
}

int cuda_store::fail_stalled(std::chrono::nanoseconds waited) {
  device_lost_ = true;
  if (!failed_.exchange(true))
    log_err("GPU %s: copies did not finish within %.1f s (copy_timeout): the GPU is stalled or "
            "lost; every request now fails with EIO",
            description_.c_str(), std::chrono::duration<double>(waited).count());
  return -EIO;
}

std::optional<std::string> cuda_store::allocate(const store_keeping *keeping) {
  if (bind_thread()) return "cannot select GPU " + description_;
  if (keeping) return allocate_kept(*keeping);
  // Chunks mapped into a range of addresses (CUDA virtual memory
  // management) in both modes, so that any chunk can be given back: in lazy
  // mode as blocks are discarded, in reserved mode when the file shrinks.
  // Reserved mode takes chunks of resizable_chunk_bytes(), few enough that
  // the mount maps them quickly; lazy mode the device's granularity.
  std::string error;
  vmm_sharing chunking;
  if (!lazy()) chunking.chunk_bytes = resizable_chunk_bytes(max_size());
  vmm_ = cuda_vmm::create(device_, max_size(), &error, chunking);
  if (!vmm_) return error + " on GPU " + description_;
  if (lazy()) return std::nullopt;
  if (CUresult res = vmm_->map(0, size()); res != CUDA_SUCCESS)
    return "cannot allocate " + format_size(size()) + " of VRAM on GPU " + description_ +
           (res == CUDA_ERROR_OUT_OF_MEMORY ? ": out of memory"
                                            : " (CUDA error " + std::to_string(int(res)) + ")");
  return std::nullopt;
}

std::optional<std::string> cuda_store::allocate_kept(const store_keeping &keeping) {
  // VMM chunks that the keeper holds as descriptors, in both modes: a
  // cudaMalloc'd range cannot be shared, and would die with this process.
  std::string error;
  auto keep = keeping.keep_chunk;
  vmm_ = cuda_vmm::create(
      device_, max_size(), &error,
      {kept_chunk_bytes(lazy(), max_size()),
       [keep](uint64_t index, int fd) { return keep(index, fd, 0); }, keeping.drop_chunk});
  if (!vmm_) return error + " on GPU " + description_;
  if (keeping.takeover) {
    for (auto [index, fd] : keeping.chunks)
      if (CUresult res = vmm_->import_chunk(index, fd); res != CUDA_SUCCESS)
        return "cannot take over VRAM chunk " + std::to_string(index) + " on GPU " +
               description_ + " (CUDA error " + std::to_string(int(res)) + ")";
    return std::nullopt;
  }
  if (lazy()) return std::nullopt;
  if (CUresult res = vmm_->map(0, size()); res != CUDA_SUCCESS)
    return "cannot allocate " + format_size(size()) + " of shareable VRAM on GPU " +
           description_ + " (CUDA error " + std::to_string(int(res)) + ")";
  return std::nullopt;
}

cuda_store::~cuda_store() {
  // After a real device loss the driver is left alone: the calls would
  // only fail, and the process's exit frees everything.
  if (device_lost_) {
    if (vmm_) vmm_->abandon();
#ifdef HAVE_COPY_ENGINE
    if (engine_) engine_->abandon();
#endif
    return;
  }
  if (bind_thread()) return;
#ifdef HAVE_COPY_ENGINE
  engine_.reset();  // stops its kernel, which would keep the device busy
#endif
  // Copies may still be queued by a caller that gave up on them.
  check(cudaDeviceSynchronize(), "finishing copies");
  vmm_.reset();
}

std::unique_ptr<store_channel> cuda_store::make_channel(bool engine) {
  cudaStream_t stream;
  // Non-blocking: never serialized behind the legacy default stream.
  if (bind_thread() ||
      check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "creating a stream"))
    throw std::bad_alloc();
  int slot = -1;
#ifdef HAVE_COPY_ENGINE
  if (engine_ && engine) slot = engine_->take_slot();
#else
  (void)engine;
#endif
  return std::make_unique<cuda_channel>(stream, slot, channels_);
}

int cuda_store::check_copy(uint64_t offset, size_t len) {
  if (failed_.load(std::memory_order_relaxed)) return -EIO;
  if (offset + len > size() || len == 0) return -EINVAL;
  return bind_thread();
}

int cuda_store::copy(store_channel &ch, char *to, const char *from, size_t len,
                     cudaMemcpyKind kind, const char *what) {
  cuda_channel &c = channel_of(ch);
  cudaError_t err = cudaSuccess;
  bool queued = false;
#ifdef HAVE_COPY_ENGINE
  // Small copies of small requests, to or from memory the GPU reaches, go
  // to the engine's batch; the kernel runs them when the channel waits.
  // The small pieces of a large request (its first and last blocks) go by
  // DMA with the rest: sent to the engine, they kept its kernel running
  // through a stream of 1 MiB reads, and its polls across PCIe cost those
  // reads a sixth of their speed (docs/performance.md).
  const char *host = kind == cudaMemcpyDeviceToHost ? to : from;
  uint64_t engine_max =
      kind == cudaMemcpyDeviceToHost ? copy_engine_max_from_vram : copy_engine_max_to_vram;
  if (c.engine_slot >= 0 && std::max<uint64_t>(len, c.request_bytes) <= engine_max &&
      !engine_->disabled() &&
      pinned_.contains(host, len) && engine_->add(c.engine_slot, to, from, len)) {
    queued = true;
  }
#endif
  if (!queued) {
    err = cudaMemcpyAsync(to, from, len, kind, c.stream);
    if (err == cudaSuccess) {
      c.dma_queued = true;
      cuda_channel::count(c.dma_copies);
    }
  }
  return check(err, what);
}

char *device_address(const cuda_vmm *vmm, uint64_t offset) {
  return reinterpret_cast<char *>(vmm->base()) + offset;
}

int cuda_store::submit_read(store_channel &ch, uint64_t offset, void *dst, size_t len) {
  if (int err = check_copy(offset, len)) return err;
  auto *out = static_cast<char *>(dst);
  const char *what = "copy from VRAM";
  if (vmm_->is_mapped(offset, len))
    return copy(ch, out, device_address(vmm_.get(), offset), len,
                cudaMemcpyDeviceToHost, what);
  // Unmapped chunks read as zeros, like the host store's; copying from
  // them would be a GPU page fault that kills the context.
  uint64_t gran = vmm_->granularity();
  while (len) {
    size_t piece = std::min<uint64_t>(len, gran - offset % gran);
    if (!vmm_->chunk_mapped(offset / gran)) memset(out, 0, piece);
    else if (int err = copy(ch, out, device_address(vmm_.get(), offset), piece,
                            cudaMemcpyDeviceToHost, what))
      return err;
    out += piece, offset += piece, len -= piece;
  }
  return 0;
}

int cuda_store::submit_write(store_channel &ch, uint64_t offset, const void *src, size_t len) {
  if (int err = check_copy(offset, len)) return err;
  if (!vmm_->is_mapped(offset, len)) {
    // The cache backs every block before it writes it back; reaching here
    // is a bug, reported as an I/O error rather than a GPU page fault.
    log_err_limited("cuda store: write to unbacked offset %llu", (unsigned long long)offset);
    return -EIO;
  }
  return copy(ch, device_address(vmm_.get(), offset), static_cast<const char *>(src),
              len, cudaMemcpyHostToDevice, "copy to VRAM");
}

int cuda_store::wait(store_channel &ch) {
  cuda_channel &c = channel_of(ch);
  if (int err = bind_thread()) return err;
  // Wait for this channel's own copies even when another thread failed
  // the store: they may still be writing into buffers that this thread
  // reuses once the wait returns.  Only a dead context has none left.
  int err = 0;
#ifdef HAVE_COPY_ENGINE
  if (c.engine_slot >= 0 && engine_->pending(c.engine_slot)) err = run_engine_batch(c);
  if (err == -ETIMEDOUT) return fail_stalled(copy_timeout());
#endif
  if (!err && c.dma_queued) err = wait_dma(c);
  if (!err && failed_.load(std::memory_order_relaxed)) err = -EIO;
  return err;
}

#ifdef HAVE_COPY_ENGINE
int cuda_store::run_engine_batch(cuda_channel &c) {
  int slot = c.engine_slot;
  if (context_dead_) {
    engine_->clear(slot);  // the kernel died with the context
    return -EIO;
  }
  unsigned batch = engine_->pending(slot);
  int err = engine_->run(slot, copy_timeout());
  if (!err) cuda_channel::count(c.engine_copies, batch);
  if (err != -ENODEV) return err;
  // The engine cannot take it (a failed launch, a parked kernel, or a slot
  // the running kernel does not poll): the DMA engines copy the batch.
  err = 0;
  for (unsigned i = 0, n = engine_->pending(slot); i < n && !err; ++i) {
    const engine_abi::copy_desc &d = engine_->batch_copy(slot, i);
    err = check(cudaMemcpyAsync(reinterpret_cast<void *>(d.dst),
                                reinterpret_cast<const void *>(d.src), d.len, cudaMemcpyDefault,
                                c.stream),
                "copying with DMA for the copy engine");
    if (!err) cuda_channel::count(c.dma_copies);
  }
  c.dma_queued = true;  // a failed submit still waits for those before it
  engine_->clear(slot);
  return err;
}
#endif

int cuda_store::wait_dma(cuda_channel &c) {
  // Polled rather than cudaStreamSynchronize: it has no deadline, and a
  // stalled GPU would hang swap for ever under a set's lock.  A 4K copy
  // takes microseconds, so the first ones are waited for by spinning; then
  // the wait backs off, to spare a CPU during a long one.
  auto start = std::chrono::steady_clock::now();
  for (;;) {
    cudaError_t err = cudaStreamQuery(c.stream);
    if (err != cudaErrorNotReady) {
      c.dma_queued = false;
      return check(err, "waiting for copies");
    }
    auto waited = std::chrono::steady_clock::now() - start;
    if (waited > copy_timeout()) return fail_stalled(waited);
    if (waited > std::chrono::microseconds(50))
      std::this_thread::sleep_for(std::min<std::chrono::nanoseconds>(waited / 8,
                                                                    std::chrono::milliseconds(1)));
  }
}

int cuda_store::ensure_backed(uint64_t offset, uint64_t len) {
  if (!vmm_) return 0;
  if (failed_.load(std::memory_order_relaxed)) return -EIO;
  if (offset > max_size() || len > max_size() - offset) return -EINVAL;
  if (vmm_->is_mapped(offset, len)) return 0;
  if (int err = bind_thread()) return err;
  CUresult res = vmm_->map(offset, len);
  if (res == CUDA_SUCCESS) return 0;
  if (res == CUDA_ERROR_OUT_OF_MEMORY) {
    if (lazy()) log_err_limited("no VRAM left on GPU %s for a lazy chunk", description_.c_str());
    return -ENOSPC;
  }
  return check(as_runtime_error(res), "mapping a chunk of VRAM");
}

int cuda_store::adopt_chunk(uint64_t index, int fd) {
  if (!vmm_ || device_lost_) return -EIO;
  if (int err = bind_thread()) return err;
  return check(as_runtime_error(vmm_->import_chunk(index, fd)), "taking a VRAM chunk over");
}

void cuda_store::forget_chunk(uint64_t index) {
  if (!vmm_ || device_lost_ || bind_thread()) return;
  check(as_runtime_error(vmm_->forget_chunk(index)), "letting a VRAM chunk go");
}

void cuda_store::release(uint64_t offset, uint64_t len) {
  if (!vmm_ || device_lost_ || offset >= max_size()) return;
  if (bind_thread()) return;
  // A chunk that fails to unmap stays mapped and counted: still usable,
  // and given back at unmount.
  check(as_runtime_error(vmm_->unmap(offset, len)), "giving back a chunk of VRAM");
}

void *cuda_store::alloc_host(size_t bytes) {
  void *p = nullptr;
  // Portable: pinned for every context, whichever thread allocated it.
  // Mapped: the copy engine's kernel reaches it at its host address.
  if (bind_thread() ||
      check(cudaHostAlloc(&p, bytes, cudaHostAllocPortable | cudaHostAllocMapped),
            "pinning host memory"))
    throw std::bad_alloc();
  pinned_.add(p, bytes);
  return p;
}

int cuda_store::pin_host(void *ptr, size_t bytes) {
  if (int err = bind_thread()) return err;
  int err = check(cudaHostRegister(ptr, bytes, cudaHostRegisterPortable | cudaHostRegisterMapped),
                  "pinning shared memory");
  if (!err) pinned_.add(ptr, bytes);
  return err;
}

void cuda_store::unpin_host(void *ptr) {
  pinned_.remove(ptr);
  if (ptr && !device_lost_) check(cudaHostUnregister(ptr), "unpinning shared memory");
}

void cuda_store::free_host(void *ptr, size_t) {
  pinned_.remove(ptr);
  if (ptr && !device_lost_) check(cudaFreeHost(ptr), "freeing pinned host memory");
}

std::string uuid_text(const cudaUUID_t &uuid) {
  return gpu_uuid_text(reinterpret_cast<const unsigned char *>(uuid.bytes));
}

std::string bus_id(int device) {
  char bus[32] = "";
  if (cudaDeviceGetPCIBusId(bus, sizeof bus, device) != cudaSuccess) {
    cudaGetLastError();
    return "unknown bus";
  }
  return bus;
}

// "this machine has 2 GPUs: 0 = NVIDIA H100 80GB HBM3 (0000:65:00.0,
// GPU-...), 1 = ...", for the message about a device= that matches none.
std::string list_devices(int count) {
  std::string text = "this machine has " + std::to_string(count) + " GPU" + (count == 1 ? "" : "s");
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop;
    text += i ? ", " : ": ";
    text += std::to_string(i) + " = ";
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) {
      cudaGetLastError();
      text += "(unreadable)";
      continue;
    }
    text += std::string(prop.name) + " (" + bus_id(i) + ", " + uuid_text(prop.uuid) + ")";
  }
  return text;
}

// Finds the GPU that device= names: an index, a PCI bus id or a UUID.
bool find_device(const std::string &name, int count, int *out) {
  if (!name.empty() && name.size() < 6 &&
      name.find_first_not_of("0123456789") == std::string::npos) {
    *out = atoi(name.c_str());
    return *out < count;
  }
  if (name.find(':') != std::string::npos) {
    if (cudaDeviceGetByPCIBusId(out, name.c_str()) == cudaSuccess) return true;
    cudaGetLastError();
    return false;
  }
  // nvidia-smi -L prints "GPU-<uuid>"; take it with or without the prefix.
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) {
      cudaGetLastError();
      continue;
    }
    std::string uuid = uuid_text(prop.uuid);
    if (!strcasecmp(name.c_str(), uuid.c_str()) || !strcasecmp(name.c_str(), uuid.c_str() + 4)) {
      *out = i;
      return true;
    }
  }
  return false;
}

std::string no_device(const std::string &reason) {
  return "no CUDA device: " + reason + "; -o backend=host serves from RAM";
}

}  // namespace

std::string gpu_uuid_text(const unsigned char b[16]) {
  char text[64];
  snprintf(text, sizeof text,
           "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
           b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
           b[15]);
  return text;
}

std::unique_ptr<block_store> create_cuda_store(const options &opts, std::string *error,
                                              const store_keeping *keeping,
                                              engine_abi::launcher launch) {
  // device=N counts GPUs as nvidia-smi does (by PCI bus), not fastest
  // first, the runtime's default.  Set before CUDA starts, before any
  // worker thread exists; a user's own setting is kept.
  setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID", 0);
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    *error = no_device(err != cudaSuccess ? cudaGetErrorString(err) : "none found");
    return nullptr;
  }
  int device = 0;
  if (!find_device(opts.device, count, &device)) {
    *error = "device=" + opts.device + ": no such GPU (an index, PCI bus id or UUID); " +
             list_devices(count);
    return nullptr;
  }
  cudaDeviceProp prop;
  size_t free_bytes = 0, total_bytes = 0;
  if ((err = cudaSetDevice(device)) != cudaSuccess ||
      (err = cudaGetDeviceProperties(&prop, device)) != cudaSuccess ||
      (err = cudaMemGetInfo(&free_bytes, &total_bytes)) != cudaSuccess) {
    *error = no_device("GPU " + std::to_string(device) + ": " + cudaGetErrorString(err));
    return nullptr;
  }
  std::string description = std::string(prop.name) + " (" + bus_id(device) + ")";
  std::string gpu = "GPU " + std::to_string(device) + " (" + prop.name + ")";

  uint64_t size = 0, max_size = 0;
  if (keeping && keeping->takeover) {
    // What the first server chose; its VRAM is taken.
    max_size = keeping->size;
    size = keeping->file_size;
  } else if (!opts.size) {
    uint64_t reserve = opts.reserve.resolve(total_bytes);
    // A standby server (failover) opens a CUDA context of its own once
    // this one serves: its VRAM comes out of what this one takes, so that
    // reserve= still holds then.
    uint64_t standby = opts.failover && opts.standby ? standby_context_bytes : 0;
    // Whole device pages (2 MiB): the VRAM held is then exactly the size.
    uint64_t unit = std::max<uint64_t>(opts.block, 2 * MiB);
    if (free_bytes < reserve + standby + unit) {
      *error = gpu + " has " + format_size(free_bytes / MiB * MiB) +
               " of free VRAM, not more than reserve=" + format_size(reserve) +
               (standby ? " and the " + format_size(standby) + " a standby server needs" : "") +
               "; give size= or a smaller reserve=" + (standby ? ", or standby=0" : "");
      return nullptr;
    }
    size = (free_bytes - reserve - standby) / unit * unit;
  } else {
    size = opts.size->resolve(total_bytes);
    if (opts.size->is_percent()) size -= size % opts.block;
    if (!size) {
      *error = "size=" + std::to_string(opts.size->percent) + "% of VRAM is less than one block";
      return nullptr;
    }
  }
  if (!(keeping && keeping->takeover)) {
    max_size = opts.max_size ? opts.max_size->resolve(total_bytes) : size;
    if (opts.max_size && opts.max_size->is_percent()) max_size -= max_size % opts.block;
    if (max_size < size) {
      *error = "max_size=" + format_size(max_size) + " is smaller than size=" + format_size(size);
      return nullptr;
    }
    // A lazy mount takes VRAM as it is written: it may be larger than what
    // is free now, never than the card; nor may the file grow beyond it.
    uint64_t limit = opts.lazy ? total_bytes : free_bytes;
    if (size > limit) {
      *error = "size=" + format_size(size) + " is larger than the " +
               format_size(limit / MiB * MiB) + " of " + (opts.lazy ? "" : "free ") +
               "VRAM on " + gpu;
      return nullptr;
    }
    if (max_size > total_bytes) {
      *error = "max_size=" + format_size(max_size) + " is larger than the " +
               format_size(total_bytes / MiB * MiB) + " of VRAM on " + gpu;
      return nullptr;
    }
  }
  auto store = std::make_unique<cuda_store>(size, max_size, opts.lazy, device, description);
  if (auto e = store->allocate(keeping)) {
    *error = *e;
    return nullptr;
  }
  store->start_engine_if_usable(opts, launch);
  // One context at a time on this GPU: a second server (a standby) could
  // not start beside this one.
  int mode = cudaComputeModeDefault;
  if (cudaDeviceGetAttribute(&mode, cudaDevAttrComputeMode, device) == cudaSuccess)
    store->set_single_process(mode == cudaComputeModeExclusiveProcess ||
                              mode == cudaComputeModeProhibited);
  cudaGetLastError();
  return store;
}

}  // namespace vramfs
