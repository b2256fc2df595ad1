#include "common/fault_injection.h"

#include <cstdlib>

namespace vramfs {

std::optional<std::string> fault_injection::configure_from_environment() {
  const char *spec = getenv("VRAMFS_INJECT_FAULT");
  if (!spec || !*spec) return std::nullopt;
  return configure(spec);
}

std::optional<std::string> fault_injection::configure(const std::string &spec) {
  const std::string expected =
      "copy:N, alloc:N, sticky:N, stall:N, takeover:N, slow_start:MS, takeover_crash:N, "
      "resize_crash:N or single_process:1";
  copy_at_ = alloc_at_ = sticky_at_ = stall_at_ = takeover_at_ = 0;
  slow_start_ms_ = takeover_crash_at_ = resize_crash_at_ = 0;
  single_process_ = false;
  copy_count_ = alloc_count_ = sticky_count_ = stall_count_ = 0;
  size_t start = 0;
  while (start < spec.size()) {
    size_t comma = spec.find(',', start);
    if (comma == std::string::npos) comma = spec.size();
    std::string item = spec.substr(start, comma - start);
    size_t colon = item.find(':');
    std::string kind = item.substr(0, colon);
    char *end = nullptr;
    unsigned long long n =
        colon == std::string::npos ? 0 : strtoull(item.c_str() + colon + 1, &end, 10);
    if (!n || !end || *end)
      return "invalid VRAMFS_INJECT_FAULT item '" + item + "': expected " + expected;
    if (kind == "copy") copy_at_ = n;
    else if (kind == "alloc") alloc_at_ = n;
    else if (kind == "sticky") sticky_at_ = n;
    else if (kind == "stall") stall_at_ = n;
    else if (kind == "takeover") takeover_at_ = n;
    else if (kind == "slow_start") slow_start_ms_ = n;
    else if (kind == "takeover_crash") takeover_crash_at_ = n;
    else if (kind == "resize_crash") resize_crash_at_ = n;
    else if (kind == "single_process") single_process_ = true;
    else
      return "invalid VRAMFS_INJECT_FAULT item '" + item + "': expected " + expected;
    start = comma + 1;
  }
  return std::nullopt;
}

}  // namespace vramfs
