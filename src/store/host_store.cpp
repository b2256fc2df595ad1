#include "store/host_store.h"

#include "common/fault_injection.h"
#include "common/log.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>
#include <thread>

namespace vramfs {
namespace {

class host_channel final : public store_channel {};

uint64_t round_up(uint64_t v, uint64_t to) { return (v + to - 1) / to * to; }

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

host_store::host_store(uint64_t size, bool lazy) : block_store(size, lazy) {
  if (lazy) {
    chunks_.assign(round_up(size, chunk_bytes) / chunk_bytes, nullptr);
  } else {
    reserved_ = static_cast<std::byte *>(map_anonymous(round_up(size, chunk_bytes)));
    if (!reserved_) throw std::bad_alloc();
    held_ = round_up(size, chunk_bytes);
  }
}

host_store::host_store(uint64_t size, std::byte *memory)
    : block_store(size, false), reserved_(memory), reserved_is_ours_(false) {
  held_ = round_up(size, chunk_bytes);
}

host_store::~host_store() {
  if (reserved_ && reserved_is_ours_) munmap(reserved_, round_up(size(), chunk_bytes));
  for (std::byte *chunk : chunks_)
    if (chunk) munmap(chunk, chunk_bytes);
}

std::unique_ptr<store_channel> host_store::open_channel() {
  return std::make_unique<host_channel>();
}

std::byte *host_store::address(uint64_t offset) const {
  if (reserved_) return reserved_ + offset;
  std::byte *chunk = chunks_[offset / chunk_bytes];
  return chunk ? chunk + offset % chunk_bytes : nullptr;
}

int host_store::check_copy(uint64_t offset, size_t len) {
  if (failed_.load(std::memory_order_relaxed)) return -EIO;
  if (offset + len > size() || len == 0) return -EINVAL;
  if (fault_injection::copy_is_sticky_failure()) {
    failed_ = true;
    log_err("host store: injected device loss; every copy fails from now on");
    return -EIO;
  }
  if (fault_injection::copy_fails()) return -EIO;
  return 0;
}

int host_store::submit_read(store_channel &, uint64_t offset, void *dst, size_t len) {
  if (int err = check_copy(offset, len)) return err;
  auto *out = static_cast<std::byte *>(dst);
  // A block larger than a chunk spans several chunk mappings.
  while (len) {
    size_t piece = std::min<uint64_t>(len, chunk_bytes - offset % chunk_bytes);
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
    size_t piece = std::min<uint64_t>(len, chunk_bytes - offset % chunk_bytes);
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
  if (failed_.load(std::memory_order_relaxed)) return -EIO;
  if (fault_injection::wait_stalls()) {
    // Copies here are done by the time they are submitted: a stall can
    // only be injected, and it behaves as the cuda store's would.
    std::this_thread::sleep_for(copy_timeout());
    failed_ = true;
    log_err("host store: copies did not finish within %lld s (injected stall); every request "
            "now fails with EIO",
            (long long)std::chrono::duration_cast<std::chrono::seconds>(copy_timeout()).count());
    return -EIO;
  }
  return 0;
}

int host_store::ensure_backed(uint64_t offset, uint64_t len) {
  if (!lazy()) return 0;
  std::lock_guard lock(chunks_mutex_);
  for (uint64_t c = offset / chunk_bytes; c * chunk_bytes < offset + len; ++c) {
    if (chunks_[c]) continue;
    void *p = fault_injection::alloc_fails() ? nullptr : map_anonymous(chunk_bytes);
    if (!p) return -ENOSPC;
    chunks_[c] = static_cast<std::byte *>(p);
    held_.fetch_add(chunk_bytes, std::memory_order_relaxed);
  }
  return 0;
}

void host_store::release(uint64_t offset, uint64_t len) {
  if (!lazy()) return;
  std::lock_guard lock(chunks_mutex_);
  for (uint64_t c = offset / chunk_bytes; c * chunk_bytes < offset + len; ++c) {
    if (!chunks_[c]) continue;
    munmap(chunks_[c], chunk_bytes);
    chunks_[c] = nullptr;
    held_.fetch_sub(chunk_bytes, std::memory_order_relaxed);
  }
}

void *host_store::alloc_host(size_t bytes) {
  void *p = map_anonymous(round_up(bytes, 4096));
  if (!p) throw std::bad_alloc();
  return p;
}

void host_store::free_host(void *ptr, size_t bytes) {
  if (ptr) munmap(ptr, round_up(bytes, 4096));
}

}  // namespace vramfs
