// The file .stats at the root of the mount: one "key value" line per key
// of one declared table, in its order.  vramswap, its JSON and metrics, the
// tests and the docs read these keys by name; `vramfs --stats-keys` prints
// the table (key, unit, meaning), and a test checks that every key they
// name is in it.
#pragma once

#include <span>
#include <string>

namespace vramfs::fuse {

struct filesystem;

struct stats_key {
  const char *name;
  // "count", "bytes", "ns", "us", "ms", "s", "pid", "flag" (0 or 1), or
  // "text".
  const char *unit;
  const char *meaning;
  std::string (*value)(const filesystem &fs);
};

// Every key, in the order .stats shows them.
std::span<const stats_key> stats_keys();

// The text of .stats now.
std::string render_stats_text(const filesystem &fs);

// The table as `vramfs --stats-keys` prints it: "key unit meaning", a line
// each.
std::string describe_stats_keys();

}  // namespace vramfs::fuse
