#include "fuse/request.h"

#include <algorithm>

namespace vramfs::fuse {

size_t fixed_argument_size(uint32_t opcode) {
  switch (opcode) {
    case op_getattr: return sizeof(getattr_in);
    case op_setattr: return sizeof(setattr_in);
    case op_open:
    case op_opendir: return sizeof(open_in);
    case op_read:
    case op_readdir: return sizeof(read_in);
    case op_write: return sizeof(write_in);
    case op_release:
    case op_releasedir: return sizeof(release_in);
    case op_fsync:
    case op_fsyncdir: return sizeof(fsync_in);
    case op_flush: return sizeof(flush_in);
    case op_init: return sizeof(init_in);
    case op_fallocate: return sizeof(fallocate_in);
    case op_lseek: return sizeof(lseek_in);
    case op_ioctl: return sizeof(ioctl_in);
    case op_interrupt: return sizeof(interrupt_in);
    default: return 0;  // LOOKUP's name, STATFS, DESTROY, and what is refused unread
  }
}

bool is_unanswered(uint32_t opcode) {
  return opcode == op_forget || opcode == op_batch_forget || opcode == op_interrupt;
}

std::optional<std::string> request::name() const {
  auto nul = std::find(payload.begin(), payload.end(), std::byte{0});
  if (nul == payload.end() || nul == payload.begin()) return std::nullopt;
  return std::string(reinterpret_cast<const char *>(payload.data()), size_t(nul - payload.begin()));
}

namespace {

// INIT from kernels before 7.36 was shorter than today's 64 bytes; the
// first 16 (major, minor, readahead, flags) always came.
constexpr size_t shortest_init = 16;

bool argument_long_enough(uint32_t opcode, size_t have) {
  size_t want = fixed_argument_size(opcode);
  return have >= want || (opcode == op_init && have >= shortest_init);
}

}  // namespace

std::optional<request> split_device_request(std::span<const std::byte> bytes, uint64_t *unique,
                                            std::string *error) {
  *unique = 0;
  request r;
  if (bytes.size() < sizeof(in_header)) {
    *error = "request of " + std::to_string(bytes.size()) + " bytes is shorter than its header";
    return std::nullopt;
  }
  memcpy(&r.header, bytes.data(), sizeof r.header);
  *unique = r.header.unique;
  if (r.header.len != bytes.size()) {
    *error = "request length " + std::to_string(r.header.len) + " differs from the " +
             std::to_string(bytes.size()) + " bytes read";
    return std::nullopt;
  }
  std::span<const std::byte> rest = bytes.subspan(sizeof(in_header));
  if (!argument_long_enough(r.header.opcode, rest.size())) {
    *error = "opcode " + std::to_string(r.header.opcode) + " is missing its argument";
    return std::nullopt;
  }
  size_t fixed = std::min(fixed_argument_size(r.header.opcode), rest.size());
  r.argument = rest.first(fixed);
  r.payload = rest.subspan(fixed);
  return r;
}

std::optional<request> split_ring_request(const uring_req_header &header,
                                          std::span<const std::byte> payload, uint64_t *unique,
                                          std::string *error) {
  request r;
  memcpy(&r.header, header.in_out, sizeof r.header);
  *unique = r.header.unique;
  uint32_t payload_size = header.ring_ent_in_out.payload_sz;
  if (payload_size > payload.size()) {
    *error = "ring payload of " + std::to_string(payload_size) + " bytes overflows its " +
             std::to_string(payload.size()) + "-byte buffer";
    return std::nullopt;
  }
  size_t fixed = fixed_argument_size(r.header.opcode);
  static_assert(sizeof(uring_req_header::op_in) >= sizeof(setattr_in));
  r.argument = std::as_bytes(std::span(header.op_in)).first(fixed);
  r.payload = payload.first(payload_size);
  return r;
}

}  // namespace vramfs::fuse
