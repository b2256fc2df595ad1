// The classic transport: threads that read /dev/fuse and write replies back.
#include "common/log.h"
#include "fuse/operations.h"
#include "fuse/request.h"
#include "fuse/request_poller.h"
#include "fuse/transport.h"
#include "store/block_store.h"

#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

namespace vramfs::fuse {

void init_latch::set(bool accepted) {
  std::lock_guard lock(mutex_);
  if (state_ != state::waiting) return;
  state_ = accepted ? state::accepted : state::refused;
  cv_.notify_all();
}

init_latch::state init_latch::wait_for(int timeout_ms) {
  std::unique_lock lock(mutex_);
  cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
               [this] { return state_ != state::waiting; });
  return state_;
}

bool init_latch::wait() {
  std::unique_lock lock(mutex_);
  cv_.wait(lock, [this] { return state_ != state::waiting; });
  return state_ == state::accepted;
}

worker_buffers::worker_buffers(block_store &store, size_t in_bytes, size_t out_bytes)
    : store_(store), channel_(store.open_channel()), in_bytes_(in_bytes), out_bytes_(out_bytes) {
  in_ = static_cast<std::byte *>(store_.alloc_host(in_bytes_));
  try {
    out_ = static_cast<std::byte *>(store_.alloc_host(out_bytes_));
  } catch (...) {
    store_.free_host(in_, in_bytes_);
    throw;
  }
}

worker_buffers::~worker_buffers() {
  store_.free_host(out_, out_bytes_);
  store_.free_host(in_, in_bytes_);
}

namespace {

// Sends the answer to request `unique`.  ENOENT means the request was
// interrupted or the connection aborted meanwhile: nobody waits for it.
void send_reply(int fd, uint64_t unique, const answer &a, std::span<std::byte> out) {
  out_header h{};
  h.unique = unique;
  h.error = a.error;
  size_t body = a.error ? 0 : a.length;
  h.len = uint32_t(sizeof h + body);
  iovec iov[2] = {{&h, sizeof h}, {out.data(), body}};
  ssize_t n;
  do {
    n = writev(fd, iov, body ? 2 : 1);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && errno != ENOENT && errno != ENODEV)
    log_err_limited("replying to FUSE request %llu failed: %s", (unsigned long long)unique,
                    strerror(errno));
}

}  // namespace

int send_notify_resend(int fd) {
  out_header h{};
  h.len = sizeof h;
  h.error = notify_resend;
  h.unique = 0;
  ssize_t n;
  do {
    n = write(fd, &h, sizeof h);
  } while (n < 0 && errno == EINTR);
  return n == ssize_t(sizeof h) ? 0 : n < 0 ? -errno : -EIO;
}

void serve_device(filesystem &fs, int fd, worker_buffers &w, init_latch &initialized,
                  request_poller *poller) {
  std::span<std::byte> in = w.in();
  for (;;) {
    ssize_t n;
    if (poller)
      n = poller->next(fd, in);
    else if ((n = read(fd, in.data(), in.size())) < 0)
      n = -errno;
    if (n < 0) {
      int err = int(-n);
      // ENODEV: the connection is gone (unmounted or aborted); nothing
      // can be open any more, so this is the only way out.
      if (err == ENODEV) return;
      // ENOENT: a request was interrupted before it could be read.
      if (err == EINTR || err == EAGAIN || err == ENOENT) continue;
      log_err_limited("reading /dev/fuse failed: %s; retrying", strerror(err));
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      continue;
    }
    uint64_t unique = 0;
    std::string why;
    auto req = split_device_request(in.first(size_t(n)), &unique, &why);
    if (!req) {
      log_err_limited("malformed FUSE request: %s", why.c_str());
      if (unique) send_reply(fd, unique, answer{-EINVAL, 0}, w.out());
      continue;
    }
    answer a = dispatch(fs, w.channel(), *req, w.out());
    if (!a.reply) continue;
    send_reply(fd, unique, a, w.out());
    if (req->header.opcode == op_init) initialized.set(a.error == 0);
  }
}

namespace {

class device_transport final : public transport {
 public:
  device_transport(filesystem &fs, block_store &store, unsigned threads, unsigned busy_poll_us)
      : fs_(fs), poller_(busy_poll_us), busy_poll_us_(busy_poll_us) {
    // The kernel wants room for the largest WRITE and its headers.
    size_t in_bytes = std::max(min_read_buffer, max_request_bytes + 4096);
    for (unsigned i = 0; i < threads; ++i)
      workers_.push_back(std::make_unique<worker_buffers>(store, in_bytes, max_request_bytes));
  }
  ~device_transport() override { join(); }

  transport_kind kind() const override { return transport_kind::dev; }

  void start(int fd) override {
    if (int err = poller_.attach(fd))
      log_err("cannot make /dev/fuse non-blocking (%s): busy polling may stall", strerror(-err));
    for (auto &w : workers_)
      threads_.emplace_back([this, fd, &w] {
        serve_device(fs_, fd, *w, initialized_, &poller_);
        initialized_.set(false);  // the connection ended before INIT
      });
  }

  void join() override {
    for (std::thread &t : threads_)
      if (t.joinable()) t.join();
    threads_.clear();
  }

  std::string describe() const override {
    return "transport dev, " + std::to_string(workers_.size()) + " threads" +
           (busy_poll_us_ ? ", busy_poll " + std::to_string(busy_poll_us_) + " us" : "");
  }

 private:
  filesystem &fs_;
  request_poller poller_;
  unsigned busy_poll_us_;
  std::vector<std::unique_ptr<worker_buffers>> workers_;
  std::vector<std::thread> threads_;
};

}  // namespace

std::unique_ptr<transport> make_device_transport(filesystem &fs, block_store &store,
                                                 unsigned threads, unsigned busy_poll_us) {
  return std::make_unique<device_transport>(fs, store, threads, busy_poll_us);
}

}  // namespace vramfs::fuse
