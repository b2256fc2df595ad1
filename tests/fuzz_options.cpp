// libFuzzer target over the option and size parsers: no input may crash
// them, and whatever they accept must be consistent.  Built and run by
// `make fuzz` (clang with -fsanitize=fuzzer), for a bounded time in CI.
#include "common/options.h"

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

using namespace vramfs;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string input(reinterpret_cast<const char *>(data), size);

  size_spec spec;
  if (!parse_size(input, true, &spec)) {
    if (spec.is_percent() ? spec.percent < 1 || spec.percent > 100 : spec.bytes == 0) abort();
    (void)spec.resolve(UINT64_MAX);
  }

  // The input split at NUL bytes is a command line.
  std::vector<std::string> words = {"vramfs"};
  size_t start = 0;
  for (size_t i = 0; i <= input.size(); ++i)
    if (i == input.size() || input[i] == '\0') {
      words.push_back(input.substr(start, i - start));
      start = i + 1;
    }
  std::vector<const char *> argv;
  for (const std::string &w : words) argv.push_back(w.c_str());
  options o;
  if (!parse_command_line(int(argv.size()), argv.data(), &o) && o.prepare_grow_file &&
      (o.prepare_grow_size == 0 || o.prepare_grow_file->empty()))
    abort();
  // --help, --version, --stats-keys, --gpu-memory and --prepare-grow are
  // whole commands: they need no mountpoint, and the rest is not checked.
  if (!parse_command_line(int(argv.size()), argv.data(), &o) && !o.show_help &&
      !o.show_version && !o.show_stats_keys && !o.gpu_memory_device && !o.prepare_grow_file) {
    bool power_of_two = o.block && !(o.block & (o.block - 1)) && o.cache && !(o.cache & (o.cache - 1));
    if (!power_of_two || o.block < min_block || o.block > max_block || o.cache < 8 * o.block ||
        o.threads < 1 || o.threads > max_threads || o.mountpoint.empty() ||
        o.name.find('/') != std::string::npos)
      abort();
    if (o.size && !o.size->is_percent() && (o.size->bytes == 0 || o.size->bytes % 4096)) abort();
  }
  return 0;
}
