// vramfs-bench: the measurements behind bench/run.  libc, pthreads and one
// header of src/common: it builds with `g++ -O2 -std=c++20 -pthread -Isrc`.
//
//   vramfs-bench fill PATH BS                        write all of PATH once
//   vramfs-bench seq PATH read|write BS STREAMS SECONDS
//   vramfs-bench rand PATH read|write BS QD SECONDS [aio|threads]
//   vramfs-bench swap MIB SECONDS SEED [THREADS [PHASE_FILE]]
//
// Each command prints one line: its name, then key=value pairs, every value
// measured here.  bench/run collects them and computes medians.  Errors go
// to stderr with exit status 1; a page that comes back wrong from swap is an
// error.
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/cli_tool.h"

namespace {

using vramfs::cli_tool::die;
using vramfs::cli_tool::number;

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

uint64_t now_ns() {
  return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                      clock_type::now().time_since_epoch())
                      .count());
}

// splitmix64: fast, and its output does not compress, which matters for zram.
inline uint64_t splitmix64(uint64_t &state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void fill_random(uint8_t *buf, size_t len, uint64_t seed) {
  uint64_t state = seed;
  for (size_t i = 0; i + 8 <= len; i += 8) {
    uint64_t v = splitmix64(state);
    memcpy(buf + i, &v, 8);
  }
}

struct aligned_free {
  void operator()(uint8_t *p) const { free(p); }
};
using buffer = std::unique_ptr<uint8_t, aligned_free>;

buffer aligned_buffer(size_t len) {
  void *p = nullptr;
  if (posix_memalign(&p, 4096, len ? len : 1)) die("out of memory");
  return buffer(static_cast<uint8_t *>(p));
}

// An O_DIRECT descriptor on a file or block device, and its size.
struct target {
  int fd = -1;
  uint64_t size = 0;
  target(const char *path, bool write) {
    fd = open(path, (write ? O_RDWR : O_RDONLY) | O_DIRECT | O_CLOEXEC);
    if (fd < 0) die("open %s with O_DIRECT: %s", path, strerror(errno));
    off_t end = lseek(fd, 0, SEEK_END);  // works for block devices too
    if (end < 0) die("size of %s: %s", path, strerror(errno));
    size = uint64_t(end);
  }
  ~target() { close(fd); }
  target(const target &) = delete;
  target &operator=(const target &) = delete;
};

bool parse_op(const char *s) {
  if (!strcmp(s, "read")) return false;
  if (!strcmp(s, "write")) return true;
  die("operation must be read or write, not %s", s);
}

void do_io(int fd, bool write, uint8_t *buf, size_t len, uint64_t off) {
  ssize_t n = write ? pwrite(fd, buf, len, off_t(off)) : pread(fd, buf, len, off_t(off));
  if (n < 0) die("%s of %zu bytes at %" PRIu64 ": %s", write ? "write" : "read", len, off,
                 strerror(errno));
  if (size_t(n) != len)
    die("short %s at %" PRIu64 ": %zd of %zu bytes", write ? "write" : "read", off, n, len);
}

// --- latency histogram: log-linear buckets (64 per power of two, so within
// 1.6%) over the whole range of uint64 nanoseconds, in a few KiB however many
// requests a run completes.
class histogram {
 public:
  void add(uint64_t ns) { ++counts_[index(ns)], ++total_; }
  void merge(const histogram &o) {
    for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += o.counts_[i];
    total_ += o.total_;
  }
  uint64_t total() const { return total_; }
  // The middle of the bucket holding the q-quantile, in microseconds.
  double quantile_us(double q) const {
    if (!total_) return 0;
    uint64_t rank = uint64_t(q * double(total_ - 1)) + 1, seen = 0;
    for (size_t i = 0; i < counts_.size(); ++i)
      if ((seen += counts_[i]) >= rank) return (lower(i) + lower(i + 1)) / 2.0 / 1000.0;
    return 0;
  }

 private:
  static constexpr unsigned sub = 64;  // buckets per power of two
  static size_t index(uint64_t ns) {
    if (ns < sub) return size_t(ns);
    unsigned e = 63u - unsigned(__builtin_clzll(ns)), shift = e - 6;
    return size_t(sub + (e - 6) * sub + ((ns >> shift) - sub));
  }
  static double lower(size_t i) {
    if (i < sub) return double(i);
    size_t e = (i - sub) / sub + 6, m = (i - sub) % sub + sub;
    return double(m) * double(uint64_t(1) << (e - 6));
  }
  std::array<uint64_t, sub + 58 * sub> counts_{};
  uint64_t total_ = 0;
};

// --- fill ------------------------------------------------------------------

// Writes every byte of PATH once, so that reads later find data everywhere
// (a vramfs hole or a never-written zram page would read back faster than
// real data).
int cmd_fill(int argc, char **argv) {
  if (argc != 2) die("usage: fill PATH BS");
  target t(argv[0], true);
  size_t bs = number(argv[1]);
  if (!bs || bs % 4096) die("block size must be a multiple of 4096");
  if (t.size % 4096) die("size of %s is not a multiple of 4096", argv[0]);
  constexpr unsigned streams = 4;
  uint64_t region = t.size / streams / 4096 * 4096;
  auto t0 = clock_type::now();
  std::vector<std::thread> threads;
  for (unsigned s = 0; s < streams; ++s)
    threads.emplace_back([&, s] {
      buffer buf = aligned_buffer(bs);
      uint64_t begin = s * region, end = s + 1 == streams ? t.size : begin + region;
      for (uint64_t off = begin; off < end; off += bs) {
        size_t len = size_t(std::min<uint64_t>(bs, end - off));
        fill_random(buf.get(), len, off);
        do_io(t.fd, true, buf.get(), len, off);
      }
    });
  for (auto &th : threads) th.join();
  if (fsync(t.fd) && errno != EINVAL) die("fsync: %s", strerror(errno));
  double secs = seconds_since(t0);
  printf("fill bytes=%" PRIu64 " seconds=%.3f gbps=%.3f\n", t.size, secs,
         double(t.size) / secs / 1e9);
  return 0;
}

// --- seq -------------------------------------------------------------------

int cmd_seq(int argc, char **argv) {
  if (argc != 5) die("usage: seq PATH read|write BS STREAMS SECONDS");
  bool write = parse_op(argv[1]);
  size_t bs = number(argv[2]);
  unsigned streams = unsigned(number(argv[3]));
  double duration = double(number(argv[4]));
  if (!bs || bs % 4096) die("block size must be a multiple of 4096");
  if (!streams) die("at least one stream");
  target t(argv[0], write);
  // Each stream owns one contiguous region and walks it, wrapping around.
  uint64_t region = t.size / streams / bs * bs;
  if (!region) die("%s (%" PRIu64 " bytes) is too small for %u streams of %zu", argv[0],
                   t.size, streams, bs);
  std::atomic<bool> go{false}, stop{false};
  std::vector<uint64_t> bytes(streams, 0);
  std::vector<std::thread> threads;
  for (unsigned s = 0; s < streams; ++s)
    threads.emplace_back([&, s] {
      buffer buf = aligned_buffer(bs);
      fill_random(buf.get(), bs, 0x5EED0000 + s);
      uint64_t base = s * region, pos = 0, done = 0;
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      while (!stop.load(std::memory_order_relaxed)) {
        do_io(t.fd, write, buf.get(), bs, base + pos);
        done += bs;
        if ((pos += bs) == region) pos = 0;
      }
      bytes[s] = done;
    });
  auto t0 = clock_type::now();
  go.store(true, std::memory_order_release);
  std::this_thread::sleep_for(std::chrono::duration<double>(duration));
  stop.store(true);
  for (auto &th : threads) th.join();
  double secs = seconds_since(t0);  // includes the requests that finish after stop
  uint64_t total = 0;
  for (uint64_t b : bytes) total += b;
  printf("seq op=%s bs=%zu streams=%u seconds=%.3f bytes=%" PRIu64 " gbps=%.3f\n",
         write ? "write" : "read", bs, streams, secs, total, double(total) / secs / 1e9);
  return 0;
}

// --- rand ------------------------------------------------------------------

struct rand_result {
  histogram hist;
  double seconds = 0;
};

// xorshift-style offset generator: uniform aligned block numbers.
struct offsets {
  uint64_t state, blocks, bs;
  offsets(uint64_t seed, uint64_t size, uint64_t block) : state(seed), blocks(size / block), bs(block) {}
  uint64_t next() { return (splitmix64(state) % blocks) * bs; }
};

// QD threads, each with one synchronous request in flight.
void rand_threads(const target &t, bool write, size_t bs, unsigned qd, double duration,
                  rand_result &r) {
  std::atomic<bool> go{false}, stop{false};
  std::vector<std::unique_ptr<histogram>> hists;
  for (unsigned i = 0; i < qd; ++i) hists.push_back(std::make_unique<histogram>());
  std::vector<std::thread> threads;
  for (unsigned i = 0; i < qd; ++i)
    threads.emplace_back([&, i] {
      buffer buf = aligned_buffer(bs);
      fill_random(buf.get(), bs, 0xAB00 + i);
      offsets off(0xC0FFEE + i, t.size, bs);
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      while (!stop.load(std::memory_order_relaxed)) {
        uint64_t o = off.next(), t1 = now_ns();
        do_io(t.fd, write, buf.get(), bs, o);
        hists[i]->add(now_ns() - t1);
      }
    });
  auto t0 = clock_type::now();
  go.store(true, std::memory_order_release);
  std::this_thread::sleep_for(std::chrono::duration<double>(duration));
  stop.store(true);
  for (auto &th : threads) th.join();
  r.seconds = seconds_since(t0);
  for (auto &h : hists) r.hist.merge(*h);
}

// Linux native AIO through the raw system calls (no libaio): one thread keeps
// QD requests in flight; latency is submission to reaped completion.
class aio_context {
 public:
  explicit aio_context(unsigned depth) {
    if (syscall(SYS_io_setup, depth, &ctx_) < 0) die("io_setup: %s", strerror(errno));
  }
  ~aio_context() { syscall(SYS_io_destroy, ctx_); }
  aio_context(const aio_context &) = delete;
  aio_context &operator=(const aio_context &) = delete;
  void submit(std::vector<iocb *> &batch) {
    size_t done = 0;
    while (done < batch.size()) {
      long n = syscall(SYS_io_submit, ctx_, long(batch.size() - done), batch.data() + done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) die("io_submit: %s", strerror(errno));
      done += size_t(n);
    }
    batch.clear();
  }
  long reap(io_event *events, long max) {
    for (;;) {
      long n = syscall(SYS_io_getevents, ctx_, 1L, max, events, nullptr);
      if (n >= 0) return n;
      if (errno != EINTR) die("io_getevents: %s", strerror(errno));
    }
  }

 private:
  aio_context_t ctx_ = 0;
};

void rand_aio(const target &t, bool write, size_t bs, unsigned qd, double duration,
              rand_result &r) {
  aio_context ctx(qd);
  buffer bufs = aligned_buffer(bs * qd);
  fill_random(bufs.get(), bs * qd, 0xAB00);
  std::vector<iocb> cbs(qd);
  std::vector<uint64_t> started(qd);
  std::vector<io_event> events(qd);
  std::vector<iocb *> batch;
  offsets off(0xC0FFEE, t.size, bs);
  auto prepare = [&](unsigned i) {
    memset(&cbs[i], 0, sizeof cbs[i]);
    cbs[i].aio_data = i;
    cbs[i].aio_lio_opcode = write ? IOCB_CMD_PWRITE : IOCB_CMD_PREAD;
    cbs[i].aio_fildes = uint32_t(t.fd);
    cbs[i].aio_buf = uint64_t(uintptr_t(bufs.get() + size_t(i) * bs));
    cbs[i].aio_nbytes = bs;
    cbs[i].aio_offset = int64_t(off.next());
    started[i] = now_ns();
    batch.push_back(&cbs[i]);
  };
  auto t0 = clock_type::now();
  uint64_t deadline = now_ns() + uint64_t(duration * 1e9);
  for (unsigned i = 0; i < qd; ++i) prepare(i);
  ctx.submit(batch);
  unsigned inflight = qd;
  bool stopping = false;
  while (inflight) {
    long n = ctx.reap(events.data(), long(qd));
    uint64_t now = now_ns();
    if (now >= deadline) stopping = true;
    for (long e = 0; e < n; ++e) {
      unsigned i = unsigned(events[size_t(e)].data);
      if (events[size_t(e)].res != int64_t(bs))
        die("%s of %zu bytes at %lld: %s", write ? "write" : "read", bs,
            (long long)cbs[i].aio_offset,
            events[size_t(e)].res < 0 ? strerror(int(-events[size_t(e)].res)) : "short");
      r.hist.add(now - started[i]);
      if (stopping) --inflight;
      else prepare(i);
    }
    if (!batch.empty()) ctx.submit(batch);
  }
  r.seconds = seconds_since(t0);
}

int cmd_rand(int argc, char **argv) {
  if (argc != 5 && argc != 6) die("usage: rand PATH read|write BS QD SECONDS [aio|threads]");
  bool write = parse_op(argv[1]);
  size_t bs = number(argv[2]);
  unsigned qd = unsigned(number(argv[3]));
  double duration = double(number(argv[4]));
  std::string engine = argc == 6 ? argv[5] : "aio";
  if (!bs || bs % 4096) die("block size must be a multiple of 4096");
  if (!qd) die("queue depth must be at least 1");
  target t(argv[0], write);
  if (t.size < bs) die("%s is smaller than one block", argv[0]);
  rand_result r;
  if (engine == "aio") rand_aio(t, write, bs, qd, duration, r);
  else if (engine == "threads") rand_threads(t, write, bs, qd, duration, r);
  else die("engine must be aio or threads, not %s", engine.c_str());
  printf("rand op=%s bs=%zu qd=%u engine=%s seconds=%.3f ios=%" PRIu64
         " iops=%.0f p50_us=%.1f p99_us=%.1f\n",
         write ? "write" : "read", bs, qd, engine.c_str(), r.seconds, r.hist.total(),
         double(r.hist.total()) / r.seconds, r.hist.quantile_us(0.50),
         r.hist.quantile_us(0.99));
  return 0;
}

// --- swap ------------------------------------------------------------------

constexpr size_t page_size = 4096;

// The content of page p at version v: its index and version up front (so a
// misplaced page says where it came from), then incompressible noise.
void make_page(uint8_t *out, uint64_t seed, uint64_t p, uint32_t v) {
  uint64_t words[page_size / 8];
  uint64_t state = seed * 0xD1B54A32D192ED03ull ^ (p << 20) ^ v;
  words[0] = p;
  words[1] = v;
  for (size_t i = 2; i < page_size / 8; ++i) words[i] = splitmix64(state);
  memcpy(out, words, page_size);
}

void check_page(const uint8_t *mem, uint64_t seed, uint64_t p, uint32_t v, uint8_t *want,
                const char *when) {
  make_page(want, seed, p, v);
  if (!memcmp(mem, want, page_size)) return;
  uint64_t got_p, got_v;
  memcpy(&got_p, mem, 8);
  memcpy(&got_v, mem + 8, 8);
  size_t i = 0;
  while (mem[i] == want[i]) ++i;
  die("%s: page %" PRIu64 " version %u came back wrong from swap: first bad byte %zu "
      "(read 0x%02x, expected 0x%02x); its header says page %" PRIu64 " version %" PRIu64,
      when, p, v, i, mem[i], want[i], got_p, got_v);
}

struct vmstat {
  uint64_t pswpin = 0, pswpout = 0;
  static vmstat read() {
    vmstat s;
    FILE *f = fopen("/proc/vmstat", "r");
    if (!f) return s;
    char key[64];
    unsigned long long v;
    while (fscanf(f, "%63s %llu", key, &v) == 2) {
      if (!strcmp(key, "pswpin")) s.pswpin = v;
      if (!strcmp(key, "pswpout")) s.pswpout = v;
    }
    fclose(f);
    return s;
  }
};

// Replaces PATH's contents with PHASE and a newline.  A reader sees the old
// name or the new one, never an empty file: the new text goes to a
// temporary file that rename() puts in place.
void write_phase(const char *path, const char *phase) {
  std::string tmp = std::string(path) + ".new", text = std::string(phase) + "\n";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) die("%s: %s", tmp.c_str(), strerror(errno));
  bool ok = write(fd, text.data(), text.size()) == ssize_t(text.size());
  if (close(fd) != 0 || !ok || rename(tmp.c_str(), path) != 0)
    die("%s: %s", path, strerror(errno));
}

long major_faults() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_majflt;
}

// Run inside a memory cgroup smaller than MIB: fill every page, then touch
// random pages for SECONDS (verify the page's current version, write the
// next), then verify every page.  Random touches on a working set larger than
// the limit make nearly every touch a swap-in and, soon after, a swap-out.
// THREADS threads (default 1) each own every THREADS-th page, so no two
// touch the same page and each page's version has one writer; the rate is
// their sum, as many processes faulting at once would see it.  PHASE_FILE,
// if given, is rewritten with the phase's name (fill, touch, check) as each
// begins, so that a watcher (bench/run's GPU sampler) can measure the
// machine inside the touch phase without guessing how long the fill takes.
int cmd_swap(int argc, char **argv) {
  if (argc < 3 || argc > 5) die("usage: swap MIB SECONDS SEED [THREADS [PHASE_FILE]]");
  uint64_t bytes = number(argv[0]) << 20, seed = number(argv[2]);
  double duration = double(number(argv[1]));
  unsigned nthreads = argc >= 4 ? unsigned(number(argv[3])) : 1;
  const char *phase_file = argc == 5 ? argv[4] : nullptr;
  auto announce = [phase_file](const char *phase) {
    if (phase_file) write_phase(phase_file, phase);
  };
  uint64_t pages = bytes / page_size;
  if (!pages) die("at least 1 MiB");
  if (nthreads < 1 || nthreads > 1024 || nthreads > pages) die("THREADS must be 1 to 1024");
  std::vector<uint32_t> version(pages, 0);
  auto *mem = static_cast<uint8_t *>(
      mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (mem == MAP_FAILED) die("mmap %" PRIu64 " bytes: %s", bytes, strerror(errno));
  // Page-sized swap traffic, the same on every machine whatever its THP setting.
  madvise(mem, bytes, MADV_NOHUGEPAGE);

  // Runs fn(thread, want) on every thread and waits for them.
  auto on_threads = [&](auto fn) {
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < nthreads; ++t)
      threads.emplace_back([&, t] {
        buffer want = aligned_buffer(page_size);
        fn(t, want.get());
      });
    for (auto &th : threads) th.join();
  };

  announce("fill");
  vmstat vm0 = vmstat::read();
  auto t0 = clock_type::now();
  on_threads([&](unsigned t, uint8_t *) {
    for (uint64_t p = t; p < pages; p += nthreads) make_page(mem + p * page_size, seed, p, 0);
  });
  double fill_s = seconds_since(t0);

  vmstat vm1 = vmstat::read();
  long majflt0 = major_faults();
  std::atomic<uint64_t> touches{0};
  announce("touch");
  auto t1 = clock_type::now();
  uint64_t deadline = now_ns() + uint64_t(duration * 1e9);
  on_threads([&](unsigned t, uint8_t *want) {
    uint64_t rng = seed ^ 0x7A11C0DEull ^ (uint64_t(t) << 40), mine = 0;
    uint64_t owned = (pages - t + nthreads - 1) / nthreads;  // pages t, t+n, t+2n, ...
    for (;;) {
      if ((mine & 15) == 0 && now_ns() >= deadline) break;
      uint64_t p = t + (splitmix64(rng) % owned) * nthreads;
      uint8_t *page = mem + p * page_size;
      check_page(page, seed, p, version[p], want, "touch");
      make_page(page, seed, p, ++version[p]);
      ++mine;
    }
    touches += mine;
  });
  double touch_s = seconds_since(t1);
  long majflt = major_faults() - majflt0;
  vmstat vm2 = vmstat::read();

  announce("check");
  auto t2 = clock_type::now();
  on_threads([&](unsigned t, uint8_t *want) {
    for (uint64_t p = t; p < pages; p += nthreads)
      check_page(mem + p * page_size, seed, p, version[p], want, "final check");
  });
  uint64_t verified = pages;
  double verify_s = seconds_since(t2);
  double wall_s = seconds_since(t0);
  vmstat vm3 = vmstat::read();
  munmap(mem, bytes);

  printf("swap mib=%" PRIu64 " threads=%u touches=%" PRIu64 " touches_per_s=%.0f wall_s=%.3f"
         " verified_pages=%" PRIu64 " pswpin=%" PRIu64 " pswpout=%" PRIu64
         " fill_s=%.3f touch_s=%.3f verify_s=%.3f touch_majflt=%ld"
         " touch_pswpin=%" PRIu64 " touch_pswpout=%" PRIu64 "\n",
         bytes >> 20, nthreads, touches.load(), double(touches.load()) / touch_s, wall_s,
         verified, vm3.pswpin - vm0.pswpin, vm3.pswpout - vm0.pswpout, fill_s, touch_s,
         verify_s, majflt, vm2.pswpin - vm1.pswpin, vm2.pswpout - vm1.pswpout);
  return 0;
}

}  // namespace

int main(int argc, char **argv) {
  if (argc < 2) die("usage: vramfs-bench fill|seq|rand|swap ARGS... (see the source header)");
  std::string cmd = argv[1];
  argc -= 2, argv += 2;
  setvbuf(stdout, nullptr, _IOLBF, 0);
  if (cmd == "fill") return cmd_fill(argc, argv);
  if (cmd == "seq") return cmd_seq(argc, argv);
  if (cmd == "rand") return cmd_rand(argc, argv);
  if (cmd == "swap") return cmd_swap(argc, argv);
  die("unknown command %s", cmd.c_str());
}
