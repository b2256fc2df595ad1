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

// The largest copy the engine takes; larger ones go to the DMA engines
// (cudaMemcpyAsync), which move them faster once the driver call's fixed
// cost is small beside the transfer (docs/performance.md has the figures).
constexpr uint64_t copy_engine_max_bytes = 16 * 1024;

}  // namespace vramfs
