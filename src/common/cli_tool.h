// Helpers for the project's command-line tools (vramfs-io, vramfs-bench),
// header-only so that a tool still builds with one g++ command:
//   die(): an error on stderr, named for the tool (program_invocation_short_name),
//          and exit status 1;
//   number(): an unsigned number in any base strtoull takes, with an
//          optional K, M or G suffix (binary), or die().
#pragma once

#include <cerrno>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace vramfs::cli_tool {

[[noreturn]] inline void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
inline void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s: ", program_invocation_short_name);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

inline uint64_t number(const char *s) {
  char *end;
  errno = 0;
  uint64_t v = strtoull(s, &end, 0);
  if (errno || end == s) die("not a number: %s", s);
  switch (*end) {
    case 'k': case 'K': v <<= 10, ++end; break;
    case 'm': case 'M': v <<= 20, ++end; break;
    case 'g': case 'G': v <<= 30, ++end; break;
    default: break;
  }
  if (*end) die("not a number: %s", s);
  return v;
}

}  // namespace vramfs::cli_tool
