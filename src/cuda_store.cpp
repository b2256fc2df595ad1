#include "cuda_store.h"

#include "fault_injection.h"
#include "log.h"
#include "options.h"

#include <cuda.h>
#include <cuda_runtime.h>
#include <strings.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <new>
#include <type_traits>
#include <vector>

namespace vramfs {
namespace {

// The one translation from CUDA errors to errno.
int errno_of(cudaError_t err) {
  return err == cudaErrorMemoryAllocation ? -ENOSPC : -EIO;
}

// Errors after which the context is unusable: every later call would fail
// too, or worse, hang.  The store stops calling CUDA after one of these.
bool is_sticky(cudaError_t err) {
  switch (err) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidPc:
    case cudaErrorLaunchTimeout:
    case cudaErrorECCUncorrectable:
    case cudaErrorContextIsDestroyed:
    case cudaErrorDevicesUnavailable:
    case cudaErrorUnknown:
      return true;
    default:
      return false;
  }
}

uint64_t round_up(uint64_t v, uint64_t to) { return (v + to - 1) / to * to; }

// The driver API functions for lazy mapping, found through the runtime so
// that the binary does not link libcuda, which only a GPU driver installs.
struct driver_api {
  decltype(&::cuMemCreate) mem_create = nullptr;
  decltype(&::cuMemRelease) mem_release = nullptr;
  decltype(&::cuMemAddressReserve) address_reserve = nullptr;
  decltype(&::cuMemAddressFree) address_free = nullptr;
  decltype(&::cuMemMap) map = nullptr;
  decltype(&::cuMemUnmap) unmap = nullptr;
  decltype(&::cuMemSetAccess) set_access = nullptr;
  decltype(&::cuMemGetAllocationGranularity) granularity = nullptr;

  std::optional<std::string> load() {
    auto get = [](const char *name, auto *fn) -> bool {
      void *p = nullptr;
      cudaDriverEntryPointQueryResult found;
      if (cudaGetDriverEntryPointByVersion(name, &p, 12000, cudaEnableDefault, &found) !=
              cudaSuccess ||
          found != cudaDriverEntryPointSuccess || !p)
        return false;
      *fn = reinterpret_cast<std::remove_pointer_t<decltype(fn)>>(p);
      return true;
    };
    if (get("cuMemCreate", &mem_create) && get("cuMemRelease", &mem_release) &&
        get("cuMemAddressReserve", &address_reserve) &&
        get("cuMemAddressFree", &address_free) && get("cuMemMap", &map) &&
        get("cuMemUnmap", &unmap) && get("cuMemSetAccess", &set_access) &&
        get("cuMemGetAllocationGranularity", &granularity))
      return std::nullopt;
    return "the CUDA driver lacks virtual memory management, which -o lazy needs";
  }
};

class cuda_channel final : public store_channel {
 public:
  explicit cuda_channel(cudaStream_t s) : stream(s) {}
  ~cuda_channel() override { cudaStreamDestroy(stream); }
  cudaStream_t stream;
};

class cuda_store final : public block_store {
 public:
  cuda_store(uint64_t size, bool lazy, int device, std::string description)
      : block_store(size, lazy), device_(device), description_(std::move(description)) {}
  ~cuda_store() override;

  // Takes the memory: all of it, or in lazy mode the address range only.
  std::optional<std::string> allocate();

  const char *backend() const override { return "cuda"; }
  std::string device() const override { return description_; }
  uint64_t chunk_size() const override { return granularity_; }
  uint64_t held_bytes() const override { return held_.load(std::memory_order_relaxed); }

  std::unique_ptr<store_channel> open_channel() override;
  int submit_read(store_channel &ch, uint64_t offset, void *dst, size_t len) override;
  int submit_write(store_channel &ch, uint64_t offset, const void *src, size_t len) override;
  int wait(store_channel &ch) override;
  int ensure_backed(uint64_t offset, uint64_t len) override;
  void release(uint64_t offset, uint64_t len) override;
  void *alloc_host(size_t bytes) override;
  void free_host(void *ptr, size_t bytes) override;

 private:
  // The runtime's current device is per thread: every thread that calls in
  // makes this GPU current once.
  void bind_thread() const {
    thread_local int bound = -1;
    if (bound != device_) {
      cudaSetDevice(device_);
      bound = device_;
    }
  }
  int check(cudaError_t err, const char *what);
  int check_copy(uint64_t offset, size_t len);
  void unmap_chunk(uint64_t index);

  const int device_;
  const std::string description_;
  uint64_t granularity_ = 2 << 20;
  char *base_ = nullptr;  // device address of offset 0
  std::atomic<uint64_t> held_{0};
  std::atomic<bool> failed_{false};

  // Lazy mode.
  driver_api driver_;
  CUdeviceptr reserved_va_ = 0;
  uint64_t reserved_bytes_ = 0;
  std::vector<CUmemGenericAllocationHandle> chunks_;  // 0: not mapped
  std::mutex chunks_mutex_;
};

int cuda_store::check(cudaError_t err, const char *what) {
  if (err == cudaSuccess) return 0;
  if (is_sticky(err)) {
    if (!failed_.exchange(true))
      log_err("GPU %s lost during %s: %s; every request now fails with EIO",
              description_.c_str(), what, cudaGetErrorString(err));
  } else {
    log_err_limited("%s on GPU %s failed: %s", what, description_.c_str(),
                    cudaGetErrorString(err));
  }
  return errno_of(err);
}

std::optional<std::string> cuda_store::allocate() {
  bind_thread();
  if (!lazy()) {
    // One allocation for the whole size: a later write never fails for
    // lack of VRAM, and the address arithmetic stays trivial.
    void *p = nullptr;
    uint64_t bytes = round_up(size(), granularity_);
    cudaError_t err = fault_injection::alloc_fails() ? cudaErrorMemoryAllocation
                                                     : cudaMalloc(&p, bytes);
    if (err != cudaSuccess)
      return "cannot allocate " + format_size(size()) + " of VRAM on GPU " + description_ +
             ": " + cudaGetErrorString(err);
    base_ = static_cast<char *>(p);
    held_ = bytes;
    return std::nullopt;
  }
  if (auto err = driver_.load()) return err;
  CUmemAllocationProp prop{};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = device_;
  size_t gran = 0;
  if (driver_.granularity(&gran, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM) != CUDA_SUCCESS || !gran)
    return "cannot query the VRAM allocation granularity of GPU " + description_;
  granularity_ = gran;
  reserved_bytes_ = round_up(size(), granularity_);
  if (driver_.address_reserve(&reserved_va_, reserved_bytes_, 0, 0, 0) != CUDA_SUCCESS)
    return "cannot reserve " + format_size(reserved_bytes_) + " of GPU address space on " +
           description_;
  base_ = reinterpret_cast<char *>(reserved_va_);
  chunks_.assign(reserved_bytes_ / granularity_, 0);
  return std::nullopt;
}

cuda_store::~cuda_store() {
  bind_thread();
  if (lazy()) {
    if (!failed_)
      for (uint64_t c = 0; c < chunks_.size(); ++c)
        if (chunks_[c]) unmap_chunk(c);
    if (reserved_va_) driver_.address_free(reserved_va_, reserved_bytes_);
  } else if (base_) {
    cudaFree(base_);
  }
}

std::unique_ptr<store_channel> cuda_store::open_channel() {
  bind_thread();
  cudaStream_t stream;
  cudaError_t err = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  if (err != cudaSuccess) throw std::bad_alloc();
  return std::make_unique<cuda_channel>(stream);
}

int cuda_store::check_copy(uint64_t offset, size_t len) {
  if (failed_.load(std::memory_order_relaxed)) return -EIO;
  if (offset + len > size() || len == 0) return -EINVAL;
  if (fault_injection::copy_is_sticky_failure()) {
    if (!failed_.exchange(true))
      log_err("GPU %s: injected device loss; every request now fails with EIO",
              description_.c_str());
    return -EIO;
  }
  if (fault_injection::copy_fails()) {
    log_err_limited("copy on GPU %s failed: injected fault", description_.c_str());
    return -EIO;
  }
  bind_thread();
  return 0;
}

int cuda_store::submit_read(store_channel &ch, uint64_t offset, void *dst, size_t len) {
  if (int err = check_copy(offset, len)) return err;
  return check(cudaMemcpyAsync(dst, base_ + offset, len, cudaMemcpyDeviceToHost,
                               static_cast<cuda_channel &>(ch).stream),
               "copy from VRAM");
}

int cuda_store::submit_write(store_channel &ch, uint64_t offset, const void *src, size_t len) {
  if (int err = check_copy(offset, len)) return err;
  return check(cudaMemcpyAsync(base_ + offset, src, len, cudaMemcpyHostToDevice,
                               static_cast<cuda_channel &>(ch).stream),
               "copy to VRAM");
}

int cuda_store::wait(store_channel &ch) {
  if (failed_.load(std::memory_order_relaxed)) return -EIO;
  bind_thread();
  return check(cudaStreamSynchronize(static_cast<cuda_channel &>(ch).stream), "copy");
}

int cuda_store::ensure_backed(uint64_t offset, uint64_t len) {
  if (!lazy()) return 0;
  if (failed_) return -EIO;
  bind_thread();
  std::lock_guard lock(chunks_mutex_);
  for (uint64_t c = offset / granularity_; c * granularity_ < offset + len; ++c) {
    if (chunks_[c]) continue;
    CUmemAllocationProp prop{};
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = device_;
    CUmemGenericAllocationHandle handle = 0;
    CUresult res = fault_injection::alloc_fails()
                       ? CUDA_ERROR_OUT_OF_MEMORY
                       : driver_.mem_create(&handle, granularity_, &prop, 0);
    if (res != CUDA_SUCCESS) {
      log_err_limited("no VRAM left on GPU %s for a lazy chunk (CUDA error %d)",
                      description_.c_str(), int(res));
      return -ENOSPC;
    }
    CUdeviceptr at = reserved_va_ + c * granularity_;
    CUmemAccessDesc access{};
    access.location = prop.location;
    access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    res = driver_.map(at, granularity_, 0, handle, 0);
    if (res == CUDA_SUCCESS) {
      res = driver_.set_access(at, granularity_, &access, 1);
      if (res != CUDA_SUCCESS) driver_.unmap(at, granularity_);
    }
    if (res != CUDA_SUCCESS) {
      driver_.mem_release(handle);
      log_err_limited("mapping a lazy chunk on GPU %s failed (CUDA error %d)",
                      description_.c_str(), int(res));
      return res == CUDA_ERROR_OUT_OF_MEMORY ? -ENOSPC : -EIO;
    }
    chunks_[c] = handle;
    held_.fetch_add(granularity_, std::memory_order_relaxed);
  }
  return 0;
}

void cuda_store::unmap_chunk(uint64_t index) {
  driver_.unmap(reserved_va_ + index * granularity_, granularity_);
  driver_.mem_release(chunks_[index]);
  chunks_[index] = 0;
  held_.fetch_sub(granularity_, std::memory_order_relaxed);
}

void cuda_store::release(uint64_t offset, uint64_t len) {
  if (!lazy() || failed_) return;
  bind_thread();
  std::lock_guard lock(chunks_mutex_);
  for (uint64_t c = offset / granularity_; c * granularity_ < offset + len; ++c)
    if (chunks_[c]) unmap_chunk(c);
}

void *cuda_store::alloc_host(size_t bytes) {
  bind_thread();
  void *p = nullptr;
  if (cudaHostAlloc(&p, bytes, cudaHostAllocPortable) != cudaSuccess) throw std::bad_alloc();
  return p;
}

void cuda_store::free_host(void *ptr, size_t) {
  if (ptr) cudaFreeHost(ptr);
}

std::string uuid_text(const cudaUUID_t &uuid) {
  const auto *b = reinterpret_cast<const unsigned char *>(uuid.bytes);
  char text[64];
  snprintf(text, sizeof text,
           "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
           b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
           b[15]);
  return text;
}

// Finds the GPU that device= names: an index, a PCI bus id or a UUID.
std::optional<std::string> find_device(const std::string &name, int count, int *out) {
  if (!name.empty() && name.find_first_not_of("0123456789") == std::string::npos) {
    int index = atoi(name.c_str());
    if (name.size() > 6 || index >= count)
      return "device=" + name + ": there is no GPU " + name + " (this machine has " +
             std::to_string(count) + ", numbered from 0)";
    *out = index;
    return std::nullopt;
  }
  if (name.find(':') != std::string::npos) {
    if (cudaDeviceGetByPCIBusId(out, name.c_str()) == cudaSuccess) return std::nullopt;
    cudaGetLastError();
    return "device=" + name + ": no GPU has that PCI bus id";
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    std::string uuid = uuid_text(prop.uuid);
    if (strcasecmp(name.c_str(), uuid.c_str()) == 0 ||
        strcasecmp(name.c_str(), uuid.c_str() + 4) == 0) {
      *out = i;
      return std::nullopt;
    }
  }
  return "device=" + name + ": not a GPU index, PCI bus id or UUID of this machine";
}

}  // namespace

std::unique_ptr<block_store> create_cuda_store(const options &opts, std::string *error) {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    *error = std::string("no CUDA device: ") +
             (err != cudaSuccess ? cudaGetErrorString(err) : "none found") +
             "; -o backend=host serves from RAM";
    return nullptr;
  }
  int device = 0;
  if (auto e = find_device(opts.device, count, &device)) {
    *error = *e;
    return nullptr;
  }
  cudaDeviceProp prop;
  size_t free_bytes = 0, total_bytes = 0;
  if ((err = cudaSetDevice(device)) != cudaSuccess ||
      (err = cudaGetDeviceProperties(&prop, device)) != cudaSuccess ||
      (err = cudaMemGetInfo(&free_bytes, &total_bytes)) != cudaSuccess) {
    *error = "no CUDA device: GPU " + opts.device + ": " + cudaGetErrorString(err) +
             "; -o backend=host serves from RAM";
    return nullptr;
  }
  char bus[32] = "";
  cudaDeviceGetPCIBusId(bus, sizeof bus, device);
  std::string description = std::string(prop.name) + " (" + bus + ")";
  std::string gpu = "GPU " + std::to_string(device) + " (" + prop.name + ")";

  uint64_t size;
  if (!opts.size) {
    uint64_t reserve = opts.reserve.bytes;
    if (free_bytes <= reserve + opts.block) {
      *error = gpu + " has " + format_size(free_bytes / MiB * MiB) + " of free VRAM, not more than reserve=" +
               format_size(reserve) + "; give size= or a smaller reserve=";
      return nullptr;
    }
    size = (free_bytes - reserve) / opts.block * opts.block;
  } else {
    size = opts.size->resolve(total_bytes);
    if (opts.size->is_percent()) size -= size % opts.block;
  }
  uint64_t limit = opts.lazy ? total_bytes : free_bytes;
  if (size > limit) {
    *error = "size=" + format_size(size) + " is larger than the " +
             format_size(limit / MiB * MiB) + " of " + (opts.lazy ? "" : "free ") + "VRAM on " + gpu;
    return nullptr;
  }
  auto store = std::make_unique<cuda_store>(size, opts.lazy, device, description);
  if (auto e = store->allocate()) {
    *error = *e;
    return nullptr;
  }
  return store;
}

}  // namespace vramfs
