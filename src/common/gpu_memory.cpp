#include "common/gpu_memory.h"

#include <dlfcn.h>

#include <cstring>
#include <memory>

namespace vramfs {
namespace {

// The few NVML declarations this needs (nvml.h is the driver's, not always
// installed where vramfs is built).  Their ABI has been stable since the
// _v2 entry points (CUDA 5).
using nvml_return = int;
using nvml_device = struct nvml_device_opaque *;
struct nvml_memory {
  unsigned long long total, free, used;
};
constexpr nvml_return nvml_success = 0;

struct nvml_api {
  nvml_return (*init)() = nullptr;
  nvml_return (*shutdown)() = nullptr;
  const char *(*error_string)(nvml_return) = nullptr;
  nvml_return (*by_index)(unsigned, nvml_device *) = nullptr;
  nvml_return (*by_uuid)(const char *, nvml_device *) = nullptr;
  nvml_return (*by_pci_bus_id)(const char *, nvml_device *) = nullptr;
  nvml_return (*memory_info)(nvml_device, nvml_memory *) = nullptr;
};

template <typename F>
bool find(void *lib, const char *name, F *out) {
  *out = reinterpret_cast<F>(dlsym(lib, name));
  return *out != nullptr;
}

struct library_closer {
  void operator()(void *lib) const { dlclose(lib); }
};

}  // namespace

std::optional<gpu_memory_reading> read_gpu_memory(const std::string &device, std::string *error) {
  std::unique_ptr<void, library_closer> lib(dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL));
  if (!lib) {
    const char *why = dlerror();
    *error = std::string("cannot load the NVIDIA driver's NVML (libnvidia-ml.so.1): ") +
             (why ? why : "not found");
    return std::nullopt;
  }
  nvml_api nvml;
  void *l = lib.get();
  if (!find(l, "nvmlInit_v2", &nvml.init) || !find(l, "nvmlShutdown", &nvml.shutdown) ||
      !find(l, "nvmlErrorString", &nvml.error_string) ||
      !find(l, "nvmlDeviceGetHandleByIndex_v2", &nvml.by_index) ||
      !find(l, "nvmlDeviceGetHandleByUUID", &nvml.by_uuid) ||
      !find(l, "nvmlDeviceGetHandleByPciBusId_v2", &nvml.by_pci_bus_id) ||
      !find(l, "nvmlDeviceGetMemoryInfo", &nvml.memory_info)) {
    *error = "this NVML (libnvidia-ml.so.1) lacks the calls vramfs needs; the driver is too old";
    return std::nullopt;
  }
  nvml_return r = nvml.init();
  if (r != nvml_success) {
    *error = std::string("NVML cannot start: ") + nvml.error_string(r);
    return std::nullopt;
  }
  nvml_device handle = nullptr;
  bool is_index = !device.empty() && device.size() < 6 &&
                  device.find_first_not_of("0123456789") == std::string::npos;
  if (is_index) r = nvml.by_index(unsigned(std::stoul(device)), &handle);
  else if (device.find(':') != std::string::npos) r = nvml.by_pci_bus_id(device.c_str(), &handle);
  else r = nvml.by_uuid((device.rfind("GPU-", 0) == 0 ? device : "GPU-" + device).c_str(), &handle);
  std::optional<gpu_memory_reading> reading;
  nvml_memory memory{};
  if (r != nvml_success) {
    *error = "no GPU " + device + " (an index, UUID or PCI bus id): " + nvml.error_string(r);
  } else if ((r = nvml.memory_info(handle, &memory)) != nvml_success) {
    *error = "cannot read GPU " + device + "'s memory: " + nvml.error_string(r);
  } else {
    reading = gpu_memory_reading{memory.free, memory.total};
  }
  nvml.shutdown();
  return reading;
}

}  // namespace vramfs
