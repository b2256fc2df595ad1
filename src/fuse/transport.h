// How requests travel between the kernel and the daemon.  Two transports
// serve the same operations (fuse/operations.h):
//
//  - dev: the classic one.  A fixed pool of threads each read a request
//    from /dev/fuse, answer it and write the reply back.
//  - uring: FUSE over io_uring (Linux 6.14 and later).  One queue per
//    possible CPU, each with its own pinned thread, ring and entries; the
//    kernel queues a request on the ring of the CPU that issued it.  INIT,
//    FORGET and INTERRUPT still come on /dev/fuse, which one thread reads.
//
// Threading: every thread, buffer and stream exists once the transport is
// constructed, before the mount is announced (docs/design.md, rule 2); no
// thread is ever reaped.  Threads inherit the creator's IO_FLUSHER flag and
// signal mask.  A transport ends only when the connection does (the mount
// is gone or aborted): a read error is logged and retried, never a reason
// to exit while the data file may be open (rule 6).
#pragma once

#include "common/options.h"

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>

namespace vramfs {

class block_store;
class store_channel;

namespace fuse {

struct filesystem;

// Set once INIT is answered (or the connection ended without one).
class init_latch {
 public:
  enum class state { waiting, accepted, refused };
  // The first call decides; INIT is answered once.
  void set(bool accepted);
  state wait_for(int timeout_ms);
  // Blocks until decided; true when INIT was accepted.
  bool wait();

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  state state_ = state::waiting;
};

// What one serving thread owns: a copy channel and its request and reply
// buffers, in pinned memory from the store (block_store::alloc_host).
class worker_buffers {
 public:
  worker_buffers(block_store &store, size_t in_bytes, size_t out_bytes);
  ~worker_buffers();
  worker_buffers(const worker_buffers &) = delete;
  worker_buffers &operator=(const worker_buffers &) = delete;

  store_channel &channel() { return *channel_; }
  std::span<std::byte> in() { return {in_, in_bytes_}; }
  std::span<std::byte> out() { return {out_, out_bytes_}; }

 private:
  block_store &store_;
  std::unique_ptr<store_channel> channel_;
  std::byte *in_ = nullptr, *out_ = nullptr;
  size_t in_bytes_, out_bytes_;
};

class transport {
 public:
  virtual ~transport() = default;
  virtual transport_kind kind() const = 0;
  // Lets the threads take requests from the mount's /dev/fuse descriptor.
  virtual void start(int fuse_fd) = 0;
  // Returns once the connection has ended and every thread with it.
  virtual void join() = 0;
  // A line for the log: threads, queues, depth.
  virtual std::string describe() const = 0;
  // Once INIT is answered: whether requests can reach the threads, or why
  // not (FUSE over io_uring, whose rings the kernel may refuse).
  virtual std::optional<std::string> wait_ready(int /*timeout_ms*/) { return std::nullopt; }
  init_latch &initialized() { return initialized_; }
  // A server that takes a connection over gets no INIT: the first server
  // answered it.
  void assume_initialized() { initialized_.set(true); }

 protected:
  init_latch initialized_;
};

// threads: the dev transport's pool; busy_poll_us: how long a thread keeps
// polling for the next request before it sleeps; queue_depth: entries per
// uring ring; queue_threads: rings (each with its thread) per CPU's queue.
std::unique_ptr<transport> make_device_transport(filesystem &fs, block_store &store,
                                                 unsigned threads, unsigned busy_poll_us);
std::unique_ptr<transport> make_uring_transport(filesystem &fs, block_store &store,
                                                unsigned queue_depth, unsigned queue_threads);

// Why io_uring cannot serve here, or nullopt when it can: the kernel's
// enable_uring parameter, and whether this build has io_uring at all.
// Checked before the mount so that a refusal leaves nothing mounted.
std::optional<std::string> uring_unavailable();

// FUSE_NOTIFY_RESEND: the kernel queues again every request that was read
// from this connection but not answered (those of a server that died).
// 0 or a negative errno.
int send_notify_resend(int fuse_fd);

class request_poller;

// Reads requests from /dev/fuse and answers them until the connection
// ends; used by both transports.  Sets `initialized` when INIT is answered.
// poller: how the dev transport's threads wait (fuse/request_poller.h);
// nullptr: a blocking read.
void serve_device(filesystem &fs, int fuse_fd, worker_buffers &w, init_latch &initialized,
                  request_poller *poller = nullptr);

}  // namespace fuse
}  // namespace vramfs
