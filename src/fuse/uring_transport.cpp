// FUSE over io_uring: one queue per possible CPU, each a pinned thread with
// its own ring and entries.  See transport.h for the threading model.
#include "fuse/transport.h"

#include "common/log.h"
#include "fuse/operations.h"
#include "fuse/request.h"
#include "store/block_store.h"

#include "config.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

#ifdef HAVE_LIBURING
#include <liburing.h>
#endif

namespace vramfs::fuse {
namespace {

constexpr const char *enable_uring_path = "/sys/module/fuse/parameters/enable_uring";

}  // namespace

std::optional<std::string> uring_unavailable() {
#ifndef HAVE_LIBURING
  return std::string("this vramfs was built without liburing: transport=uring is not available");
#else
  int fd = open(enable_uring_path, O_RDWR | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT)
    return std::string("this kernel has no FUSE over io_uring (") + enable_uring_path +
           " is missing; it needs Linux 6.14 or later with CONFIG_FUSE_IO_URING)";
  // Why it cannot be written, if it cannot: that is what the user must fix.
  int err = fd < 0 ? errno : 0;
  bool writable = fd >= 0;
  if (fd < 0) fd = open(enable_uring_path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return std::string("cannot read ") + enable_uring_path + ": " + strerror(errno);
  char value = 0;
  bool on = pread(fd, &value, 1, 0) == 1 && value == 'Y';
  // The kernel offers io_uring in INIT only while the parameter is Y.
  if (!on && writable) {
    if (pwrite(fd, "Y", 1, 0) == 1)
      on = true;
    else
      err = errno;
  }
  close(fd);
  if (!on)
    return std::string("FUSE over io_uring is off (") + enable_uring_path +
           " is N) and cannot be turned on: " + strerror(err) +
           (err == EACCES || err == EPERM ? " (it needs root)" : "");
  return std::nullopt;
#endif
}

#ifndef HAVE_LIBURING
std::unique_ptr<transport> make_uring_transport(filesystem &, block_store &, unsigned, unsigned) {
  throw std::runtime_error(*uring_unavailable());
}
#else
namespace {

// The kernel makes one queue per possible CPU (not only online ones) and
// uses the ring only once every queue has entries.
unsigned possible_cpus() {
  FILE *f = fopen("/sys/devices/system/cpu/possible", "re");
  unsigned count = 0;
  if (f) {
    unsigned a, b;
    while (fscanf(f, "%u", &a) == 1) {
      b = a;
      int c = fgetc(f);
      if (c == '-') {
        if (fscanf(f, "%u", &b) != 1) break;
        c = fgetc(f);
      }
      count = std::max(count, b + 1);
      if (c != ',') break;
    }
    fclose(f);
  }
  if (!count) count = unsigned(sysconf(_SC_NPROCESSORS_CONF));
  return count;
}

// One ring entry: the header buffer and the payload buffer it registered.
struct ring_entry {
  uring_req_header *header = nullptr;
  std::byte *payload = nullptr;
  iovec iov[2];
  bool registered = false;
};

// How the queues' registrations went.  The kernel answers a REGISTER only
// when a request comes for it, but refuses a bad one at once; a CPU's
// queue whose every entry was refused never becomes usable, and then no
// request reaches any ring (the kernel waits for all of them): the mount
// must fail, saying why, rather than hang.
class registration_board {
 public:
  explicit registration_board(unsigned queues) : failed_(queues, 0), queues_(queues) {}
  // A ring of queue qid has submitted its entries; `failed` of its
  // `entries` were refused at once, the first with error `err`.
  void report(unsigned qid, unsigned entries, unsigned failed, int err) {
    std::lock_guard lock(mutex_);
    failed_[qid] += failed;
    entries_per_queue_ = entries;
    if (failed && !first_error_) first_error_ = err;
    ++reported_;
    cv_.notify_all();
  }
  std::optional<std::string> wait(unsigned rings, unsigned rings_per_queue, int timeout_ms) {
    std::unique_lock lock(mutex_);
    if (!cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                      [&] { return reported_ >= rings; }))
      return std::string("the FUSE io_uring queues did not register within ") +
             std::to_string(timeout_ms / 1000) + " s";
    for (unsigned q = 0; q < queues_; ++q)
      if (failed_[q] >= entries_per_queue_ * rings_per_queue)
        return "FUSE over io_uring cannot work here: the kernel refused every entry of queue " +
               std::to_string(q) + " (" + strerror(first_error_) + "); use transport=dev";
    return std::nullopt;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<unsigned> failed_;
  unsigned queues_;
  unsigned entries_per_queue_ = 0;
  unsigned reported_ = 0;
  int first_error_ = 0;
};

class uring_queue {
 public:
  uring_queue(block_store &store, unsigned qid, unsigned depth)
      : store_(store), qid_(qid), channel_(store.open_channel()), entries_(depth) {
    io_uring_params params{};
    // 128-byte SQEs carry the FUSE command; every entry has at most one
    // SQE and one CQE in flight.
    params.flags = IORING_SETUP_SQE128 | IORING_SETUP_CQSIZE;
    params.cq_entries = 2 * depth;
    if (int err = io_uring_queue_init_params(depth, &ring_, &params))
      throw std::runtime_error("cannot set up io_uring for FUSE queue " + std::to_string(qid) +
                               ": " + strerror(-err));
    // Header (288 bytes) and payload of each entry, in one pinned block.
    entry_bytes_ = header_room + max_request_bytes;
    memory_ = static_cast<std::byte *>(store_.alloc_host(entry_bytes_ * depth));
    for (unsigned i = 0; i < depth; ++i) {
      ring_entry &e = entries_[i];
      e.header = reinterpret_cast<uring_req_header *>(memory_ + i * entry_bytes_);
      e.payload = memory_ + i * entry_bytes_ + header_room;
      e.iov[0] = {e.header, sizeof(uring_req_header)};
      e.iov[1] = {e.payload, max_request_bytes};
    }
  }
  ~uring_queue() {
    io_uring_queue_exit(&ring_);
    store_.free_host(memory_, entry_bytes_ * entries_.size());
  }
  uring_queue(const uring_queue &) = delete;
  uring_queue &operator=(const uring_queue &) = delete;

  // Runs on this queue's own thread until the connection ends.
  void serve(filesystem &fs, int fd, init_latch &initialized, registration_board &board);

 private:
  static constexpr size_t header_room = 4096;

  io_uring_sqe *next_sqe(unsigned index, uint32_t cmd, int fd, uint64_t commit_id);
  void answer_entry(filesystem &fs, ring_entry &e, int fd, unsigned index);
  // Handles what completed; returns how many entries ended, and counts in
  // *refused those whose registration the kernel refused.
  size_t complete(filesystem &fs, int fd, unsigned *refused, int *refusal);

  block_store &store_;
  const unsigned qid_;
  std::unique_ptr<store_channel> channel_;
  std::vector<ring_entry> entries_;
  std::byte *memory_ = nullptr;
  size_t entry_bytes_ = 0;
  io_uring ring_;
};

io_uring_sqe *uring_queue::next_sqe(unsigned index, uint32_t cmd, int fd, uint64_t commit_id) {
  io_uring_sqe *sqe = io_uring_get_sqe(&ring_);
  if (!sqe) {  // cannot happen with one SQE per entry; be safe anyway
    io_uring_submit(&ring_);
    sqe = io_uring_get_sqe(&ring_);
  }
  // liburing 2.3 has no io_uring_prep_cmd: the fields are set by hand.
  // The SQE is 128 bytes (SQE128) where its struct declares 64; hide the
  // pointer's origin so that the compiler's bounds check does not object.
  void *whole = sqe;
  asm("" : "+r"(whole));
  memset(whole, 0, 128);
  sqe->opcode = IORING_OP_URING_CMD;
  sqe->fd = fd;
  sqe->cmd_op = cmd;
  sqe->user_data = index;
  auto *req = reinterpret_cast<uring_cmd_req *>(sqe->cmd);
  req->qid = uint16_t(qid_);
  req->commit_id = commit_id;
  return sqe;
}

void uring_queue::answer_entry(filesystem &fs, ring_entry &e, int fd, unsigned index) {
  std::span<std::byte> payload(e.payload, max_request_bytes);
  uint64_t unique = 0;
  std::string why;
  answer a;
  auto req = split_ring_request(*e.header, payload, &unique, &why);
  if (!req) {
    log_err_limited("malformed FUSE request on queue %u: %s", qid_, why.c_str());
    a = answer{-EINVAL, 0};
  } else {
    a = dispatch(fs, *channel_, *req, payload);
    // The ring carries no FORGET or INTERRUPT; should one come, the entry
    // still needs its commit to take the next request.
    if (!a.reply) a = answer{};
  }
  uint64_t commit_id = e.header->ring_ent_in_out.commit_id;
  size_t body = a.error ? 0 : a.length;
  out_header h{};
  h.len = uint32_t(sizeof h + body);
  h.error = a.error;
  h.unique = unique;
  memcpy(e.header->in_out, &h, sizeof h);
  e.header->ring_ent_in_out.payload_sz = uint32_t(body);
  next_sqe(index, uring_cmd_commit_and_fetch, fd, commit_id);
}

size_t uring_queue::complete(filesystem &fs, int fd, unsigned *refused, int *refusal) {
  size_t ended = 0;
  io_uring_cqe *cqe;
  unsigned head, seen = 0;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    ++seen;
    auto index = unsigned(cqe->user_data);
    ring_entry &e = entries_[index];
    if (cqe->res == -EAGAIN && !e.registered) {
      // INIT's reply is not processed yet: register again shortly.
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      io_uring_sqe *sqe = next_sqe(index, uring_cmd_register, fd, 0);
      sqe->addr = reinterpret_cast<uint64_t>(e.iov);
      sqe->len = 2;
      continue;
    }
    if (cqe->res < 0) {
      // ENOTCONN: the connection ended (unmount); anything else retires
      // the entry too, since the kernel no longer holds it.
      if (cqe->res != -ENOTCONN && cqe->res != -ECONNABORTED) {
        log_err_limited("FUSE queue %u: entry %u %s: %s", qid_, index,
                        e.registered ? "ended" : "was refused", strerror(-cqe->res));
        if (!e.registered) {
          ++*refused;
          *refusal = -cqe->res;
          fs.state.uring_refused.fetch_add(1);
        }
      }
      ++ended;
      continue;
    }
    e.registered = true;
    answer_entry(fs, e, fd, index);
  }
  io_uring_cq_advance(&ring_, seen);
  return ended;
}

void uring_queue::serve(filesystem &fs, int fd, init_latch &initialized,
                        registration_board &board) {
  // The kernel copies requests and replies from the task that submitted
  // the entry, and queues a request on the ring of the CPU that issued it:
  // a thread on that CPU answers soonest.
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  CPU_SET(qid_, &cpus);
  if (pthread_setaffinity_np(pthread_self(), sizeof cpus, &cpus) != 0)
    log_debug("FUSE queue %u: cannot pin to CPU %u; it runs anywhere", qid_, qid_);

  // Entries are registered once INIT has been answered; a refused INIT or
  // an early unmount leaves nothing to serve.
  if (!initialized.wait()) {
    board.report(qid_, unsigned(entries_.size()), 0, 0);
    return;
  }
  for (unsigned i = 0; i < entries_.size(); ++i) {
    io_uring_sqe *sqe = next_sqe(i, uring_cmd_register, fd, 0);
    sqe->addr = reinterpret_cast<uint64_t>(entries_[i].iov);
    sqe->len = 2;
  }
  // The kernel checks each REGISTER as it is submitted: a refusal is in
  // the completion queue when the submit returns.
  io_uring_submit(&ring_);
  unsigned refused = 0;
  int refusal = 0;
  size_t active = entries_.size() - complete(fs, fd, &refused, &refusal);
  board.report(qid_, unsigned(entries_.size()), refused, refusal);
  while (active) {
    int res = io_uring_submit_and_wait(&ring_, 1);
    if (res < 0 && res != -EINTR && res != -EAGAIN && res != -EBUSY) {
      log_err_limited("FUSE queue %u: io_uring_submit_and_wait failed: %s; retrying", qid_,
                      strerror(-res));
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      continue;
    }
    active -= complete(fs, fd, &refused, &refusal);
  }
}

class uring_transport final : public transport {
 public:
  uring_transport(filesystem &fs, block_store &store, unsigned depth, unsigned threads)
      : fs_(fs),
        depth_(depth),
        threads_per_queue_(threads),
        device_worker_(store, std::max(min_read_buffer, max_request_bytes + 4096),
                       max_request_bytes),
        board_(possible_cpus()) {
    // Several rings may register entries for one queue: the kernel hands a
    // request to whichever entry is free, so one slow request (a GPU copy)
    // holds up only its own thread.
    unsigned count = possible_cpus();
    // Every entry holds a request's largest payload in locked, pinned
    // memory, on every possible CPU: refuse what a large machine cannot
    // spare rather than lock gigabytes.
    uint64_t pinned = uint64_t(count) * threads * depth * (max_request_bytes + 4096);
    if (pinned > max_ring_memory)
      throw std::runtime_error(
          "transport=uring would lock " + std::to_string(pinned >> 20) + " MiB for its rings (" +
          std::to_string(count) + " CPU queues x " + std::to_string(threads) + " thread(s) x " +
          std::to_string(depth) + " entries of 1 MiB), more than " +
          std::to_string(max_ring_memory >> 20) +
          " MiB: lower queue_depth= or queue_threads=, or use transport=dev");
    for (unsigned q = 0; q < count; ++q)
      for (unsigned t = 0; t < threads; ++t)
        queues_.push_back(std::make_unique<uring_queue>(store, q, depth));
  }
  ~uring_transport() override { join(); }

  transport_kind kind() const override { return transport_kind::uring; }

  void start(int fd) override {
    threads_.emplace_back([this, fd] {
      serve_device(fs_, fd, device_worker_, initialized_);
      initialized_.set(false);  // the connection ended before INIT
    });
    for (auto &q : queues_)
      threads_.emplace_back([this, fd, &q] { q->serve(fs_, fd, initialized_, board_); });
  }

  void join() override {
    for (std::thread &t : threads_)
      if (t.joinable()) t.join();
    threads_.clear();
  }

  std::optional<std::string> wait_ready(int timeout_ms) override {
    return board_.wait(unsigned(queues_.size()), threads_per_queue_, timeout_ms);
  }

  std::string describe() const override {
    return "transport uring, " + std::to_string(queues_.size() / threads_per_queue_) +
           " queues of " + std::to_string(threads_per_queue_) + " thread(s) with depth " +
           std::to_string(depth_);
  }

 private:
  filesystem &fs_;
  unsigned depth_;
  unsigned threads_per_queue_;
  static constexpr uint64_t max_ring_memory = uint64_t(1) << 30;
  worker_buffers device_worker_;  // INIT, FORGET, INTERRUPT on /dev/fuse
  registration_board board_;
  std::vector<std::unique_ptr<uring_queue>> queues_;
  std::vector<std::thread> threads_;
};

}  // namespace

std::unique_ptr<transport> make_uring_transport(filesystem &fs, block_store &store,
                                                unsigned queue_depth, unsigned queue_threads) {
  return std::make_unique<uring_transport>(fs, store, queue_depth, queue_threads);
}
#endif

}  // namespace vramfs::fuse
