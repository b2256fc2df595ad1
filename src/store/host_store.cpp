#include "store/host_store.h"

#include "common/log.h"
#include "common/round_up.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>

// Linux 5.14; older kernels answer EINVAL.
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

namespace vramfs {
namespace {

class host_channel final : public store_channel {};


void *map_anonymous(size_t bytes) {
  void *p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

uint64_t meminfo_kib(const char *key) {
  FILE *f = fopen("/proc/meminfo", "re");
  if (!f) return 0;
  char line[256];
  uint64_t value = 0;
  size_t keylen = strlen(key);
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, key, keylen) && line[keylen] == ':') {
      value = strtoull(line + keylen + 1, nullptr, 10);
      break;
    }
  fclose(f);
  return value;
}

}  // namespace

uint64_t host_store::total_ram() { return meminfo_kib("MemTotal") * 1024; }
uint64_t host_store::available_ram() { return meminfo_kib("MemAvailable") * 1024; }

host_store::host_store(uint64_t size, bool lazy, uint64_t max_size)
    : host_store(size, max_size, lazy, nullptr) {}

host_store::host_store(uint64_t size, uint64_t max_size, bool lazy, const store_keeping *keeping)
    : block_store(size, lazy, max_size) {
  if (keeping) {
    chunk_ = kept_chunk_bytes(lazy, this->max_size());
    keep_ = keeping->keep_chunk;
    drop_ = keeping->drop_chunk;
  }
  chunks_.assign(round_up(this->max_size(), chunk_) / chunk_, nullptr);
  if (keeping && keeping->takeover) {
    for (auto [index, fd] : keeping->chunks)
      if (index >= chunk_count() || adopt_chunk(index, fd) != 0) throw std::bad_alloc();
    return;
  }
  if (lazy) return;
  std::lock_guard lock(chunks_mutex_);
  for (uint64_t c = 0; c * chunk_ < size; ++c)
    if (map_chunk(c) != 0) throw std::bad_alloc();  // the destructor frees what was mapped
}

host_store::~host_store() {
  // Going away is not giving back: with failover the keeper's chunks stay
  // its own (a server that fails to take over must not free what the next
  // one needs).
  for (uint64_t c = 0; c < chunk_count(); ++c)
    if (chunks_[c]) munmap(chunks_[c], bytes_of(c));
}

uint64_t host_store::bytes_of(uint64_t index) const {
  return std::min(chunk_, round_up(max_size(), 4096) - index * chunk_);
}

int host_store::map_chunk(uint64_t index) {
  uint64_t bytes = bytes_of(index);
  void *p = MAP_FAILED;
  if (!keep_) {
    p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  } else {
    // The keeper gets the chunk before anything is written to it: if this
    // process dies after acknowledging a write there, the data survives.
    int fd = memfd_create("vramfs-chunk", MFD_CLOEXEC);
    if (fd < 0) return -ENOSPC;
    if (ftruncate(fd, off_t(bytes)) == 0)
      p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p != MAP_FAILED && keep_(index, fd, bytes) != 0) {
      munmap(p, bytes);
      p = MAP_FAILED;
    }
    close(fd);
  }
  if (p == MAP_FAILED) return -ENOSPC;
  // Populated now, so that running out of RAM is this call's ENOSPC and not
  // a fault later (under mlockall the mapping is populated and locked as
  // it is made; this only finds out whether that worked).
  if (madvise(p, bytes, MADV_POPULATE_WRITE) != 0 && errno != EINVAL) {
    munmap(p, bytes);
    if (keep_ && drop_) drop_(index);
    return -ENOSPC;
  }
  chunks_[index] = static_cast<std::byte *>(p);
  held_.fetch_add(bytes, std::memory_order_relaxed);
  return 0;
}

void host_store::unmap_chunk(uint64_t index, bool tell_keeper) {
  uint64_t bytes = bytes_of(index);
  munmap(chunks_[index], bytes);
  chunks_[index] = nullptr;
  held_.fetch_sub(bytes, std::memory_order_relaxed);
  // The keeper's mapping and descriptor are the last: the memory is freed
  // once it lets them go.
  if (tell_keeper && drop_) drop_(index);
}

int host_store::adopt_chunk(uint64_t index, int fd) {
  std::lock_guard lock(chunks_mutex_);
  if (index >= chunk_count()) return -EINVAL;
  if (chunks_[index]) return 0;
  uint64_t bytes = bytes_of(index);
  void *p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return -errno;
  chunks_[index] = static_cast<std::byte *>(p);
  held_.fetch_add(bytes, std::memory_order_relaxed);
  return 0;
}

void host_store::forget_chunk(uint64_t index) {
  std::lock_guard lock(chunks_mutex_);
  if (index < chunk_count() && chunks_[index]) unmap_chunk(index, false);
}

std::unique_ptr<store_channel> host_store::open_channel() {
  return std::make_unique<host_channel>();
}

std::byte *host_store::address(uint64_t offset) const {
  std::byte *chunk = chunks_[offset / chunk_];
  return chunk ? chunk + offset % chunk_ : nullptr;
}

int host_store::check_copy(uint64_t offset, size_t len) {
  if (offset + len > size() || len == 0) return -EINVAL;
  return 0;
}

int host_store::submit_read(store_channel &, uint64_t offset, void *dst, size_t len) {
  if (int err = check_copy(offset, len)) return err;
  auto *out = static_cast<std::byte *>(dst);
  // A block larger than a chunk spans several chunk mappings.
  while (len) {
    size_t piece = std::min<uint64_t>(len, chunk_ - offset % chunk_);
    std::byte *src = address(offset);
    if (src) memcpy(out, src, piece);
    else memset(out, 0, piece);
    out += piece, offset += piece, len -= piece;
  }
  return 0;
}

int host_store::submit_write(store_channel &, uint64_t offset, const void *src, size_t len) {
  if (int err = check_copy(offset, len)) return err;
  auto *in = static_cast<const std::byte *>(src);
  while (len) {
    size_t piece = std::min<uint64_t>(len, chunk_ - offset % chunk_);
    std::byte *dst = address(offset);
    if (!dst) {
      // The cache backs every block before it writes it back; reaching
      // here is a bug, reported as an I/O error rather than lost silently.
      log_err_limited("host store: write to unbacked offset %llu", (unsigned long long)offset);
      return -EIO;
    }
    memcpy(dst, in, piece);
    in += piece, offset += piece, len -= piece;
  }
  return 0;
}

int host_store::wait(store_channel &) {
  return 0;  // copies here are done by the time they are submitted
}

int host_store::ensure_backed(uint64_t offset, uint64_t len) {
  if (offset > max_size() || len > max_size() - offset) return -EINVAL;
  std::lock_guard lock(chunks_mutex_);
  uint64_t first = offset / chunk_, end = (offset + len + chunk_ - 1) / chunk_;
  if (!lazy()) {
    // A reserved resize locks all it adds at once: refused when the
    // machine does not have it, rather than pushing other memory out.
    uint64_t missing = 0;
    for (uint64_t c = first; c < end; ++c)
      if (!chunks_[c]) missing += bytes_of(c);
    if (missing > available_ram()) return -ENOSPC;
  }
  for (uint64_t c = first; c < end; ++c)
    if (!chunks_[c])
      if (int err = map_chunk(c)) return err;
  return 0;
}

void host_store::release(uint64_t offset, uint64_t len) {
  if (offset >= max_size()) return;
  std::lock_guard lock(chunks_mutex_);
  for (uint64_t c = offset / chunk_; c * chunk_ < offset + len && c < chunk_count(); ++c)
    if (chunks_[c]) unmap_chunk(c, true);
}

void *host_store::alloc_host(size_t bytes) {
  bytes = round_up(bytes, 4096);
  void *p = map_anonymous(bytes);
  if (!p) throw std::bad_alloc();
  // Populated now, even where mlockall is not in force (the sanitizer
  // build): the kernel copies a request into its server's buffer, and a
  // copy that has to fault a page in while the server is being killed
  // fails, and the kernel ends that request with EIO instead of leaving it
  // for the successor to be resent.
  if (madvise(p, bytes, MADV_POPULATE_WRITE) != 0) {
    if (errno != EINVAL) {
      munmap(p, bytes);
      throw std::bad_alloc();
    }
    memset(p, 0, bytes);  // a kernel older than 5.14
  }
  return p;
}

void host_store::free_host(void *ptr, size_t bytes) {
  if (ptr) munmap(ptr, round_up(bytes, 4096));
}

}  // namespace vramfs
