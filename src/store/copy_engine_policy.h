// Whether the copy engine (store/copy_engine.h) may run on a GPU, decided
// from facts the CUDA runtime reports; kept apart from CUDA so that the
// decision is tested on machines without a GPU.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace vramfs {

struct gpu_facts {
  // A GPU that drives a display kills kernels that run longer than a few
  // seconds (cudaDevAttrKernelExecTimeout), and the context with them.
  bool kernel_exec_timeout = false;
  // The GPU reaches pinned host memory at its host address
  // (cudaDevAttrCanUseHostPointerForRegisteredMem): the engine is handed
  // the cache's and the requests' own pointers.
  bool host_pointers_usable = false;
  int compute_major = 0;
};

// Why the engine must not run on a GPU with these facts, or nullopt.
std::optional<std::string> copy_engine_unusable(const gpu_facts &facts);

// The largest copies the engine takes, each way; larger ones go to the DMA
// engines (cudaMemcpyAsync), which move them faster once the driver call's
// fixed cost is small beside the transfer.  Measured on the H100 machine
// (check_cuda_store's engine_and_dma_latency, p50 of a copy and its wait):
// from VRAM the engine wins up to 16 KiB (4.7 against 7.5 us) and loses at
// 64 KiB (8.5 against 7.9); to VRAM, where one warp's reads cross PCIe, it
// wins at 4 KiB (4.8 against 7.8) and loses at 16 KiB (13.1 against 9.3).
constexpr uint64_t copy_engine_max_from_vram = 32 * 1024;
constexpr uint64_t copy_engine_max_to_vram = 8 * 1024;

}  // namespace vramfs
