// The fixed pool of threads that serve FUSE requests.
#pragma once

#include <cstddef>
#include <memory>
#include <thread>
#include <vector>

struct fuse_session;

namespace vramfs {

class block_store;
class store_channel;

// What one worker owns, made before the mount is announced: the I/O path
// then allocates nothing of its own.
struct worker_context {
  std::unique_ptr<store_channel> channel;
  std::byte *buffer = nullptr;  // request-sized, from block_store::alloc_host
  size_t buffer_size = 0;
};

// The context of the calling worker thread (nullptr outside the pool).
worker_context *current_worker();

// Threads that each receive and process requests from one session until it
// ends (the filesystem is unmounted).  All exist from start() on and none is
// ever reaped, unlike libfuse's own loop, which grows and shrinks its pool;
// every thread inherits the creator's IO_FLUSHER flag and signal mask.
class worker_pool {
 public:
  worker_pool(block_store &store, size_t threads, size_t buffer_size);
  ~worker_pool();
  worker_pool(const worker_pool &) = delete;
  worker_pool &operator=(const worker_pool &) = delete;

  void start(fuse_session *se);
  // Waits for every worker to finish; they do once the session ends.
  void join();

 private:
  void serve(fuse_session *se, worker_context *ctx);

  block_store &store_;
  std::vector<worker_context> contexts_;
  std::vector<std::thread> threads_;
};

}  // namespace vramfs
