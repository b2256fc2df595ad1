#include "worker_pool.h"

#include "block_store.h"
#include "log.h"

#include "config.h"

#include <fuse_lowlevel.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace vramfs {
namespace {
thread_local worker_context *this_worker = nullptr;
}

worker_context *current_worker() { return this_worker; }

worker_pool::worker_pool(block_store &store, size_t threads, size_t buffer_size)
    : store_(store), contexts_(threads) {
  for (worker_context &ctx : contexts_) {
    ctx.channel = store_.open_channel();
    ctx.buffer = static_cast<std::byte *>(store_.alloc_host(buffer_size));
    ctx.buffer_size = buffer_size;
  }
}

worker_pool::~worker_pool() {
  join();
  for (worker_context &ctx : contexts_) store_.free_host(ctx.buffer, ctx.buffer_size);
}

void worker_pool::start(fuse_session *se) {
  for (worker_context &ctx : contexts_)
    threads_.emplace_back([this, se, &ctx] { serve(se, &ctx); });
}

void worker_pool::join() {
  for (std::thread &t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
}

void worker_pool::serve(fuse_session *se, worker_context *ctx) {
  this_worker = ctx;
  fuse_buf buf{};
  while (!fuse_session_exited(se)) {
    int res = fuse_session_receive_buf(se, &buf);
    if (res == -EINTR || res == -EAGAIN) continue;
    if (res <= 0) {
      // 0 or -ENODEV: the filesystem was unmounted.  Wake the others.
      if (res < 0) log_err("reading FUSE requests failed: %s", strerror(-res));
      fuse_session_exit(se);
      break;
    }
    fuse_session_process_buf(se, &buf);
  }
  free(buf.mem);
  this_worker = nullptr;
}

}  // namespace vramfs
