// Lazy VRAM for the cuda store: one reserved range of GPU addresses, with
// physical memory mapped into it chunk by chunk as blocks are first written
// and unmapped again when they are discarded (CUDA virtual memory management).
#pragma once

#include <cuda.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

namespace vramfs {

// The driver API calls this needs, found through the runtime
// (cudaGetDriverEntryPointByVersion): the binary links libcudart_static
// only, so it starts on machines without a GPU driver and serves
// backend=host there.
struct cuda_driver_api {
  decltype(&::cuMemCreate) mem_create = nullptr;
  decltype(&::cuMemRelease) mem_release = nullptr;
  decltype(&::cuMemAddressReserve) address_reserve = nullptr;
  decltype(&::cuMemAddressFree) address_free = nullptr;
  decltype(&::cuMemMap) map = nullptr;
  decltype(&::cuMemUnmap) unmap = nullptr;
  decltype(&::cuMemSetAccess) set_access = nullptr;
  decltype(&::cuMemGetAllocationGranularity) granularity = nullptr;
  decltype(&::cuMemExportToShareableHandle) export_handle = nullptr;
  decltype(&::cuMemImportFromShareableHandle) import_handle = nullptr;

  // False when the driver lacks one of them (older than CUDA 10.2).
  bool load();
};

// With -o failover, each chunk is made shareable as a POSIX descriptor and
// handed to `keep` as it is mapped (the keeper holds it, which keeps the
// memory and its contents alive if the server dies), and `drop` is told
// when it is given back.  Without, both are empty.
struct vmm_sharing {
  uint64_t chunk_bytes = 0;  // rounded up to the granularity; 0: the granularity
  std::function<int(uint64_t index, int fd)> keep;  // 0 or -errno
  std::function<void(uint64_t index)> drop;
  bool enabled() const { return bool(keep); }
};

// Threading: map() and unmap() may be called from many threads at once and
// serialize on one mutex; is_mapped() and held_bytes() take no lock, so the
// copy path can check a range without contending with them.  Failures are
// returned as CUresult for the store to translate (it owns the one mapping
// from CUDA errors to errno).
class cuda_vmm {
 public:
  // Reserves the address range for `bytes` on `device` (the device must be
  // current).  nullptr with a message in *error when the driver cannot.
  static std::unique_ptr<cuda_vmm> create(int device, uint64_t bytes, std::string *error,
                                          vmm_sharing share = {});
  ~cuda_vmm();
  cuda_vmm(const cuda_vmm &) = delete;
  cuda_vmm &operator=(const cuda_vmm &) = delete;

  CUdeviceptr base() const { return base_; }
  uint64_t granularity() const { return granularity_; }
  uint64_t held_bytes() const { return held_.load(std::memory_order_relaxed); }
  bool chunk_mapped(uint64_t index) const {
    return chunks_[index].load(std::memory_order_acquire) != 0;
  }
  // Whether every chunk of [offset, offset + len) is mapped.
  bool is_mapped(uint64_t offset, uint64_t len) const;

  // Maps every chunk of the range that is not mapped yet.
  CUresult map(uint64_t offset, uint64_t len);
  // Unmaps and frees every mapped chunk of the range; on a failure goes on
  // with the rest and returns the first.
  CUresult unmap(uint64_t offset, uint64_t len);
  // Maps chunk `index` from a descriptor another process shared (a server
  // that died); the descriptor stays the caller's.
  CUresult import_chunk(uint64_t index, int fd);
  // Unmaps chunk `index` without telling the keeper (a standby following
  // what its predecessor gave back).
  CUresult forget_chunk(uint64_t index);
  // After the device is lost: the destructor leaves the driver alone.
  void abandon() { abandoned_ = true; }

 private:
  cuda_vmm(int device, uint64_t granularity, uint64_t bytes);
  uint64_t chunk_count() const { return (bytes_ + granularity_ - 1) / granularity_; }
  // Every chunk is granularity() bytes but the last, which ends the range.
  uint64_t chunk_bytes(uint64_t index) const {
    return std::min(granularity_, bytes_ - index * granularity_);
  }
  CUresult map_chunk(uint64_t index);
  CUresult map_handle(uint64_t index, CUmemGenericAllocationHandle handle);
  CUresult unmap_chunk(uint64_t index, bool tell_keeper = true);

  cuda_driver_api driver_;
  vmm_sharing share_;
  const int device_;
  const uint64_t granularity_;
  const uint64_t bytes_;  // the reserved range: size rounded up to the device's granularity
  CUdeviceptr base_ = 0;
  // One allocation handle per chunk, 0 when unmapped.  Written under
  // mutex_, read without it.
  std::unique_ptr<std::atomic<CUmemGenericAllocationHandle>[]> chunks_;
  std::mutex mutex_;
  std::atomic<uint64_t> held_{0};
  bool abandoned_ = false;
};

}  // namespace vramfs
