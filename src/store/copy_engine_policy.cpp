#include "store/copy_engine_policy.h"

namespace vramfs {

std::optional<std::string> copy_engine_unusable(const gpu_facts &facts) {
  // A resident kernel under a display watchdog would have to relaunch
  // every second or two, and one that overran the limit would take the
  // context, and the swap's data, with it: such a GPU copies with DMA.
  if (facts.kernel_exec_timeout)
    return "the GPU has a kernel run-time limit (it drives a display); copies use the DMA "
           "engines";
  if (!facts.host_pointers_usable)
    return "the GPU cannot reach pinned host memory at its host address; copies use the DMA "
           "engines";
  // __nanosleep and the ordering the engine relies on need Volta or newer;
  // CUDA 13 builds for Turing (7.5) and newer anyway.
  if (facts.compute_major < 7)
    return "the GPU is older than compute capability 7.0; copies use the DMA engines";
  return std::nullopt;
}

}  // namespace vramfs
