#include "failover/state_region.h"

#include "cache/extent_map.h"
#include "common/round_up.h"
#include "fuse/mount_state.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>

namespace vramfs::failover {
namespace {

constexpr char magic[8] = {'v', 'r', 'a', 'm', 'f', 's', 's', 't'};
// 2: the file size and its resizes in mount_state.
constexpr uint32_t layout_version = 2;

struct header {
  char magic[8];
  uint32_t version;
  uint32_t header_bytes;
  state_region::shape shape;
  uint64_t extents_offset, sets_offset, lines_offset, total_bytes;
  mount_state state;
};


struct offsets {
  uint64_t extents, sets, lines, total;
};

offsets place(const state_region::shape &s) {
  uint64_t blocks = (s.file_size + s.block_size - 1) / s.block_size;
  offsets o;
  o.extents = round_up(sizeof(header), 64);
  o.sets = round_up(o.extents + extent_map::words_for(blocks) * 8, 64);
  o.lines = round_up(o.sets + s.line_count / page_cache::ways * sizeof(page_cache::set_state), 4096);
  o.total = o.lines + s.line_count * s.block_size;
  return o;
}

header *header_of(std::byte *base) { return reinterpret_cast<header *>(base); }

}  // namespace

std::unique_ptr<state_region> state_region::create(const shape &s, std::string *error) {
  offsets o = place(s);
  int fd = memfd_create("vramfs-state", MFD_CLOEXEC);
  if (fd < 0 || ftruncate(fd, off_t(o.total)) != 0) {
    *error = std::string("cannot create the failover state (memfd): ") + strerror(errno);
    if (fd >= 0) close(fd);
    return nullptr;
  }
  void *base = mmap(nullptr, o.total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    *error = "cannot map " + std::to_string(o.total >> 20) + " MiB of failover state: " +
             strerror(errno);
    close(fd);
    return nullptr;
  }
  auto *h = header_of(static_cast<std::byte *>(base));
  memcpy(h->magic, magic, sizeof magic);
  h->version = layout_version;
  h->header_bytes = sizeof(header);
  h->shape = s;
  h->extents_offset = o.extents;
  h->sets_offset = o.sets;
  h->lines_offset = o.lines;
  h->total_bytes = o.total;
  new (&h->state) mount_state();
  return std::unique_ptr<state_region>(
      new state_region(static_cast<std::byte *>(base), o.total, fd));
}

std::unique_ptr<state_region> state_region::map(int fd, std::string *error) {
  struct stat st;
  if (fstat(fd, &st) != 0 || uint64_t(st.st_size) < sizeof(header)) {
    *error = "the failover state is not a state region";
    return nullptr;
  }
  void *base = mmap(nullptr, size_t(st.st_size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    *error = std::string("cannot map the failover state: ") + strerror(errno);
    return nullptr;
  }
  auto *h = header_of(static_cast<std::byte *>(base));
  offsets o = place(h->shape);
  if (memcmp(h->magic, magic, sizeof magic) || h->version != layout_version ||
      h->header_bytes != sizeof(header) || h->total_bytes != uint64_t(st.st_size) ||
      o.total != h->total_bytes || o.extents != h->extents_offset || o.sets != h->sets_offset ||
      o.lines != h->lines_offset) {
    munmap(base, size_t(st.st_size));
    *error = "the failover state has another layout (a different vramfs version?)";
    return nullptr;
  }
  return std::unique_ptr<state_region>(
      new state_region(static_cast<std::byte *>(base), size_t(st.st_size), -1));
}

state_region::~state_region() {
  munmap(base_, bytes_);
  if (fd_ >= 0) close(fd_);
}

const state_region::shape &state_region::layout() const { return header_of(base_)->shape; }
mount_state &state_region::state() { return header_of(base_)->state; }
std::atomic<uint64_t> *state_region::extent_words() {
  return reinterpret_cast<std::atomic<uint64_t> *>(base_ + header_of(base_)->extents_offset);
}
page_cache::set_state *state_region::sets() {
  return reinterpret_cast<page_cache::set_state *>(base_ + header_of(base_)->sets_offset);
}
std::byte *state_region::lines() { return base_ + header_of(base_)->lines_offset; }

}  // namespace vramfs::failover
