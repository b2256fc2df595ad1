#include "block_store.h"

#include "host_store.h"
#include "options.h"

#include "config.h"

#ifdef HAVE_CUDA
#include "cuda_store.h"
#endif

#include <chrono>
#include <new>

namespace vramfs {
namespace {

std::unique_ptr<block_store> create_host_store(const options &opts, std::string *error) {
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
    return std::make_unique<host_store>(size, opts.lazy);
  } catch (const std::bad_alloc &) {
    *error = "cannot allocate " + format_size(size) + " of RAM for backend=host";
    return nullptr;
  }
}

}  // namespace

std::unique_ptr<block_store> create_store(const options &opts, std::string *error) {
  std::unique_ptr<block_store> store;
  if (opts.backend == backend_kind::host) {
    store = create_host_store(opts, error);
  } else {
#ifdef HAVE_CUDA
    store = create_cuda_store(opts, error);
#else
    *error = "this vramfs was built without CUDA; -o backend=host serves from RAM";
#endif
  }
  if (store) store->set_copy_timeout(std::chrono::seconds(opts.copy_timeout));
  return store;
}

}  // namespace vramfs
