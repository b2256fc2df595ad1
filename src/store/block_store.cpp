#include "store/block_store.h"

#include "common/memlock.h"
#include "common/options.h"
#include "store/host_store.h"

#include "config.h"

#ifdef HAVE_CUDA
#include "store/cuda_store.h"
#endif

#include <algorithm>
#include <bit>
#include <chrono>
#include <new>

namespace vramfs {

namespace {

std::unique_ptr<block_store> create_host_store(const options &opts, std::string *error,
                                               const store_keeping *keeping) {
  if (keeping && keeping->takeover) {
    // What the first server chose, over the chunks the keeper holds.
    try {
      return std::make_unique<host_store>(keeping->file_size, keeping->size, opts.lazy, keeping);
    } catch (const std::bad_alloc &) {
      *error = "cannot map the RAM the keeper holds for backend=host" + memory_limit_hint();
      return nullptr;
    }
  }
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
  uint64_t max = opts.max_size ? opts.max_size->resolve(total) : size;
  if (opts.max_size && opts.max_size->is_percent()) max -= max % opts.block;
  if (max < size) {
    *error = "max_size=" + format_size(max) + " is smaller than size=" + format_size(size);
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
  if (max > total) {
    *error = "max_size=" + format_size(max) + " is larger than the " +
             format_size(total / MiB * MiB) + " of RAM this machine has";
    return nullptr;
  }
  try {
    return std::make_unique<host_store>(size, max, opts.lazy, keeping);
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
