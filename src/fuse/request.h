// One FUSE request as the daemon sees it, whichever transport carried it:
// the header, the operation's fixed argument and the bytes after it.
#pragma once

#include "fuse/kernel_abi.h"

#include <cstddef>
#include <cstring>
#include <optional>
#include <span>
#include <string>

namespace vramfs::fuse {

// The size of the fixed argument that opcode carries before any variable
// part (a name, WRITE's data); 0 for operations without one.
size_t fixed_argument_size(uint32_t opcode);

// Nothing in a request is trusted: each view was bounds-checked when it was
// split, and arguments are copied out, zero-extended when the kernel sent a
// shorter (older) structure.
struct request {
  in_header header{};
  std::span<const std::byte> argument;  // at most fixed_argument_size(opcode)
  std::span<const std::byte> payload;   // what follows: WRITE's data, LOOKUP's name

  template <typename T>
  T argument_as() const {
    T value{};
    memcpy(&value, argument.data(), std::min(sizeof value, argument.size()));
    return value;
  }
  // Whether the fixed argument arrived whole (INIT may be shorter: older
  // kernels sent fewer fields).
  bool has_whole_argument() const { return argument.size() >= fixed_argument_size(header.opcode); }
  // The NUL-terminated name at the start of the payload, or nullopt when
  // there is none.
  std::optional<std::string> name() const;
};

// Splits what one read() of /dev/fuse returned.  nullopt with *error set
// when the bytes are not a well-formed request; if even the header is
// unreadable, *unique is 0 and nothing can be answered.
std::optional<request> split_device_request(std::span<const std::byte> bytes, uint64_t *unique,
                                            std::string *error);

// Splits a request that arrived in a ring entry: the header buffer and the
// payload buffer, payload_size bytes of which the kernel filled.
std::optional<request> split_ring_request(const uring_req_header &header,
                                          std::span<const std::byte> payload,
                                          uint64_t *unique, std::string *error);

// Whether the kernel expects no reply to this opcode (FORGET and friends).
bool is_unanswered(uint32_t opcode);

}  // namespace vramfs::fuse
