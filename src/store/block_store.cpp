#include "store/block_store.h"

#include "common/memlock.h"
#include "common/options.h"
#include "store/host_store.h"

#include "config.h"

#ifdef HAVE_CUDA
#include "store/cuda_store.h"
#endif

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <new>

namespace vramfs {
namespace {

// backend=host with -o failover: the data in a memfd that the keeper maps
// too, so that it stays resident and locked while no server runs.
std::unique_ptr<block_store> create_kept_host_store(const options &opts, uint64_t size,
                                                    const store_keeping &keeping,
                                                    std::string *error) {
  if (keeping.takeover) return std::make_unique<host_store>(keeping.size, keeping.host_data);
  uint64_t bytes = (size + host_store::chunk_bytes - 1) / host_store::chunk_bytes *
                   host_store::chunk_bytes;
  int fd = memfd_create("vramfs-data", MFD_CLOEXEC);
  void *p = MAP_FAILED;
  if (fd >= 0 && ftruncate(fd, off_t(bytes)) == 0)
    p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
  int err = errno;
  if (p != MAP_FAILED && keeping.keep_host_data(fd) != 0) {
    munmap(p, bytes);
    p = MAP_FAILED;
    err = EPIPE;
  }
  if (fd >= 0) close(fd);
  if (p == MAP_FAILED) {
    *error = "cannot allocate " + format_size(size) + " of shared RAM for backend=host: " +
             strerror(err);
    return nullptr;
  }
  (void)opts;
  return std::make_unique<host_store>(size, static_cast<std::byte *>(p));
}

std::unique_ptr<block_store> create_host_store(const options &opts, std::string *error,
                                               const store_keeping *keeping) {
  if (keeping && keeping->takeover) return create_kept_host_store(opts, 0, *keeping, error);
  if (!opts.size) {
    *error = "backend=host needs a size (for example -o size=4G)";
    return nullptr;
  }
  uint64_t total = host_store::total_ram();
  uint64_t size = opts.size->resolve(total);
  if (opts.size->is_percent()) size -= size % opts.block;
  if (!size) {
    *error = "size=" + std::to_string(opts.size->percent) + "% of RAM is less than one block";
    return nullptr;
  }
  // A reserved mount locks all of its memory at once; a lazy one only
  // what holds data, but never more than the machine has.
  uint64_t limit = opts.lazy ? total : host_store::available_ram();
  if (size > limit) {
    *error = "size=" + format_size(size) + " is larger than the " + format_size(limit / MiB * MiB) +
             " of RAM " + (opts.lazy ? "this machine has" : "available to lock") +
             " for backend=host";
    return nullptr;
  }
  try {
    if (keeping) return create_kept_host_store(opts, size, *keeping, error);
    return std::make_unique<host_store>(size, opts.lazy);
  } catch (const std::bad_alloc &) {
    *error = "cannot allocate " + format_size(size) + " of RAM for backend=host" +
             memory_limit_hint();
    return nullptr;
  }
}

}  // namespace

std::unique_ptr<block_store> create_store(const options &opts, std::string *error,
                                          const store_keeping *keeping) {
  std::unique_ptr<block_store> store;
  if (opts.backend == backend_kind::host) {
    store = create_host_store(opts, error, keeping);
  } else {
#ifdef HAVE_CUDA
    store = create_cuda_store(opts, error, keeping);
#else
    *error = "this vramfs was built without CUDA; -o backend=host serves from RAM";
#endif
  }
  if (store) store->set_copy_timeout(std::chrono::seconds(opts.copy_timeout));
  return store;
}

}  // namespace vramfs
