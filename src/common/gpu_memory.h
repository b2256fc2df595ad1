// Free and total memory of a GPU, read through the driver's NVML
// (libnvidia-ml.so.1, loaded at run time) with no CUDA context: what
// `vramfs --gpu-memory DEVICE` prints for vramswap's elastic mode, which
// reads it every few seconds and must not cost VRAM (a CUDA context holds
// about 525 MiB on an H100).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace vramfs {

struct gpu_memory_reading {
  uint64_t free = 0;
  uint64_t total = 0;
};

// DEVICE: an index (nvidia-smi's, which NVML shares), a UUID ("GPU-..." or
// without the prefix) or a PCI bus id.  On failure, nullopt with the reason
// in *error.
std::optional<gpu_memory_reading> read_gpu_memory(const std::string &device, std::string *error);

}  // namespace vramfs
