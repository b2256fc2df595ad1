// libFuzzer target for the FUSE request decoder and the operations behind
// it (`make fuzz`): any bytes, as /dev/fuse or a ring entry would deliver
// them, must be answered with a reply or an error, never a crash, a read
// past the bytes given, or a reply longer than the buffer.
#include "common/log.h"
#include "fuse/operations.h"
#include "fuse/request.h"
#include "small_filesystem.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

using namespace vramfs;
using namespace vramfs::fuse;

namespace {

void check(const answer &a, size_t out_size) {
  if (a.error > 0 || a.error < -4095) abort();  // 0 or a negative errno
  if (!a.error && a.length > out_size) abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  // One filesystem for the whole run: state carries over from input to
  // input, as it does on a real connection.
  static small_filesystem *t = [] {
    log_set_verbose(false);
    return new small_filesystem;
  }();
  auto bytes = std::as_bytes(std::span(data, size));
  uint64_t unique;
  std::string why;
  // As /dev/fuse delivers it: a copy of exactly the bytes, so that a read
  // past them is caught.
  std::vector<std::byte> device(bytes.begin(), bytes.end());
  if (auto req = split_device_request(device, &unique, &why))
    check(dispatch(t->fs, *t->ch, *req, t->out), t->out.size());
  // As a ring entry: a 288-byte header, then the payload buffer.
  if (size >= sizeof(uring_req_header)) {
    uring_req_header h;
    memcpy(&h, data, sizeof h);
    std::vector<std::byte> payload(bytes.begin() + sizeof h, bytes.end());
    if (auto req = split_ring_request(h, payload, &unique, &why))
      check(dispatch(t->fs, *t->ch, *req, t->out), t->out.size());
  }
  return 0;
}
