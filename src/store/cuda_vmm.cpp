#include "store/cuda_vmm.h"

#include "common/options.h"
#include "common/round_up.h"

#include <cuda_runtime.h>

#include <unistd.h>

#include <type_traits>

namespace vramfs {
namespace {

CUmemAllocationProp chunk_properties(int device, bool shareable) {
  CUmemAllocationProp prop{};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = device;
  // A POSIX descriptor pins the physical memory while it exists, in any
  // process: the keeper holds one per chunk.
  if (shareable) prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
  return prop;
}

}  // namespace

bool cuda_driver_api::load() {
  auto get = [](const char *name, auto *fn) {
    void *p = nullptr;
    cudaDriverEntryPointQueryResult found;
    // 12000: the ABI these prototypes (from cuda.h) have had since CUDA 12.
    if (cudaGetDriverEntryPointByVersion(name, &p, 12000, cudaEnableDefault, &found) !=
            cudaSuccess ||
        found != cudaDriverEntryPointSuccess || !p)
      return false;
    *fn = reinterpret_cast<std::remove_pointer_t<decltype(fn)>>(p);
    return true;
  };
  return get("cuMemCreate", &mem_create) && get("cuMemRelease", &mem_release) &&
         get("cuMemAddressReserve", &address_reserve) &&
         get("cuMemAddressFree", &address_free) && get("cuMemMap", &map) &&
         get("cuMemUnmap", &unmap) && get("cuMemSetAccess", &set_access) &&
         get("cuMemGetAllocationGranularity", &granularity) &&
         get("cuMemExportToShareableHandle", &export_handle) &&
         get("cuMemImportFromShareableHandle", &import_handle);
}

cuda_vmm::cuda_vmm(int device, uint64_t granularity, uint64_t bytes)
    : device_(device),
      granularity_(granularity),
      bytes_(bytes),
      chunks_(std::make_unique<std::atomic<CUmemGenericAllocationHandle>[]>(
          (bytes + granularity - 1) / granularity)) {
}

std::unique_ptr<cuda_vmm> cuda_vmm::create(int device, uint64_t bytes, std::string *error,
                                           vmm_sharing share) {
  cuda_driver_api driver;
  if (!driver.load()) {
    *error = "the CUDA driver lacks virtual memory management, which -o lazy needs";
    return nullptr;
  }
  // The smallest unit the driver maps (2 MiB on current GPUs): memory is
  // taken and given back in the finest steps the device allows.
  CUmemAllocationProp prop = chunk_properties(device, share.enabled());
  size_t granularity = 0;
  CUresult res = driver.granularity(&granularity, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM);
  if (res != CUDA_SUCCESS || !granularity) {
    *error = "cannot query the VRAM allocation granularity (CUDA error " +
             std::to_string(int(res)) + ")";
    return nullptr;
  }
  // The range: the size to the device's granularity, never more.  Shared
  // chunks are larger (each is a descriptor in the keeper); the last one
  // is then shorter, so that the VRAM held is what was asked for.
  uint64_t reserved = round_up(bytes, granularity);
  if (share.chunk_bytes) granularity = round_up(share.chunk_bytes, granularity);
  std::unique_ptr<cuda_vmm> vmm(new cuda_vmm(device, granularity, reserved));
  vmm->driver_ = driver;
  vmm->share_ = std::move(share);
  // Address space only: no memory is taken until map().
  res = driver.address_reserve(&vmm->base_, reserved, 0, 0, 0);
  if (res != CUDA_SUCCESS) {
    *error = "cannot reserve " + format_size(reserved) + " of GPU address space (CUDA error " +
             std::to_string(int(res)) + ")";
    return nullptr;
  }
  return vmm;
}

cuda_vmm::~cuda_vmm() {
  if (abandoned_ || !base_) return;
  // Going away is not giving back: the keeper's descriptors stay theirs
  // until the keeper itself ends (a server that fails to take over must
  // not free what the next one needs).
  share_.drop = nullptr;
  for (uint64_t c = 0; c < chunk_count(); ++c)
    if (chunk_mapped(c)) unmap_chunk(c);
  driver_.address_free(base_, bytes_);
}

bool cuda_vmm::is_mapped(uint64_t offset, uint64_t len) const {
  for (uint64_t c = offset / granularity_; c * granularity_ < offset + len; ++c)
    if (!chunk_mapped(c)) return false;
  return true;
}

CUresult cuda_vmm::map(uint64_t offset, uint64_t len) {
  std::lock_guard lock(mutex_);
  for (uint64_t c = offset / granularity_; c * granularity_ < offset + len; ++c)
    if (!chunk_mapped(c))
      if (CUresult res = map_chunk(c); res != CUDA_SUCCESS) return res;
  return CUDA_SUCCESS;
}

CUresult cuda_vmm::unmap(uint64_t offset, uint64_t len) {
  std::lock_guard lock(mutex_);
  CUresult first = CUDA_SUCCESS;
  for (uint64_t c = offset / granularity_; c * granularity_ < offset + len; ++c)
    if (chunk_mapped(c))
      if (CUresult res = unmap_chunk(c); res != CUDA_SUCCESS && first == CUDA_SUCCESS)
        first = res;
  return first;
}

CUresult cuda_vmm::map_chunk(uint64_t index) {
  CUmemAllocationProp prop = chunk_properties(device_, share_.enabled());
  CUmemGenericAllocationHandle handle = 0;
  CUresult res = driver_.mem_create(&handle, chunk_bytes(index), &prop, 0);
  if (res != CUDA_SUCCESS) return res;
  if (share_.enabled()) {
    // The keeper gets the chunk before anything is written to it: if this
    // process dies after acknowledging a write there, the data survives.
    int fd = -1;
    res = driver_.export_handle(&fd, handle, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0);
    if (res == CUDA_SUCCESS) {
      int err = share_.keep(index, fd);
      close(fd);
      if (err) res = CUDA_ERROR_OPERATING_SYSTEM;
    }
    if (res != CUDA_SUCCESS) {
      driver_.mem_release(handle);
      return res;
    }
  }
  return map_handle(index, handle);
}

CUresult cuda_vmm::import_chunk(uint64_t index, int fd) {
  std::lock_guard lock(mutex_);
  if (chunk_mapped(index)) return CUDA_SUCCESS;
  CUmemGenericAllocationHandle handle = 0;
  CUresult res = driver_.import_handle(&handle, reinterpret_cast<void *>(intptr_t(fd)),
                                       CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR);
  if (res != CUDA_SUCCESS) return res;
  return map_handle(index, handle);
}

CUresult cuda_vmm::map_handle(uint64_t index, CUmemGenericAllocationHandle handle) {
  CUdeviceptr at = base_ + index * granularity_;
  CUresult res = driver_.map(at, chunk_bytes(index), 0, handle, 0);
  if (res == CUDA_SUCCESS) {
    CUmemAccessDesc access{};
    access.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    access.location.id = device_;
    access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    res = driver_.set_access(at, chunk_bytes(index), &access, 1);
    if (res != CUDA_SUCCESS) driver_.unmap(at, chunk_bytes(index));
  }
  if (res != CUDA_SUCCESS) {
    driver_.mem_release(handle);
    return res;
  }
  // Release: a copy that sees the handle sees a usable mapping.
  chunks_[index].store(handle, std::memory_order_release);
  held_.fetch_add(chunk_bytes(index), std::memory_order_relaxed);
  return CUDA_SUCCESS;
}

CUresult cuda_vmm::forget_chunk(uint64_t index) {
  std::lock_guard lock(mutex_);
  return chunk_mapped(index) ? unmap_chunk(index, false) : CUDA_SUCCESS;
}

CUresult cuda_vmm::unmap_chunk(uint64_t index, bool tell_keeper) {
  CUresult res = driver_.unmap(base_ + index * granularity_, chunk_bytes(index));
  // A range that cannot be unmapped keeps its memory: releasing the handle
  // would not free it anyway, and the chunk stays usable.
  if (res != CUDA_SUCCESS) return res;
  res = driver_.mem_release(chunks_[index].load(std::memory_order_relaxed));
  chunks_[index].store(0, std::memory_order_relaxed);
  held_.fetch_sub(chunk_bytes(index), std::memory_order_relaxed);
  // The keeper's descriptor is the last reference: the memory is freed
  // once it closes it.
  if (share_.drop && tell_keeper) share_.drop(index);
  return res;
}

}  // namespace vramfs
