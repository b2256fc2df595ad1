// vramfs-io: the I/O the integration tests need and the shell lacks: exact
// offsets and lengths, O_DIRECT, verification against a reference copy, and a
// process whose memory is pushed through swap and checked page by page.
//
//   vramfs-io fill FILE OFFSET LENGTH SEED [direct]    write a pattern
//   vramfs-io verify FILE OFFSET LENGTH SEED [direct]  check that pattern
//   vramfs-io zeros FILE OFFSET LENGTH                 check the range is zero
//   vramfs-io random FILE OPS MAXLEN SEED              random writes and reads,
//                                                      each read checked
//   vramfs-io punch FILE OFFSET LENGTH                 fallocate PUNCH_HOLE
//   vramfs-io swapper MIB PASSES SEED                  touch MIB of memory,
//                                                      verify every page
//   vramfs-io soak MIB SECONDS SEED                    the same, passes until
//                                                      SECONDS are over (or,
//                                                      after SIGUSR1, the pass
//                                                      under way)
//   vramfs-io reread FILE COUNT                        open, read whole, close
//   vramfs-io stress FILE THREADS SECONDS SEED         concurrent random writes,
//                                                      reads and discards, each
//                                                      read checked
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <atomic>
#include <chrono>
#include <random>
#include <thread>
#include <string>
#include <vector>

#include "common/cli_tool.h"

namespace {

using vramfs::cli_tool::die;
using vramfs::cli_tool::number;

// The byte at absolute position pos of the pattern for seed: cheap, and
// different for every position and seed, so a misplaced block shows.
inline uint8_t pattern_byte(uint64_t seed, uint64_t pos) {
  uint64_t x = (pos / 8 + 1) * 0x9E3779B97F4A7C15ull ^ (seed * 0xD1B54A32D192ED03ull);
  x ^= x >> 29;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 32;
  return uint8_t(x >> (8 * (pos % 8)));
}

void fill_pattern(uint8_t *buf, uint64_t pos, size_t len, uint64_t seed) {
  for (size_t i = 0; i < len; ++i) buf[i] = pattern_byte(seed, pos + i);
}

int open_file(const char *path, int flags, bool direct) {
  int fd = open(path, flags | (direct ? O_DIRECT : 0));
  if (fd < 0) die("open %s: %s", path, strerror(errno));
  return fd;
}

// O_DIRECT needs page-aligned buffers.
struct free_deleter {
  void operator()(uint8_t *p) const { free(p); }
};
using aligned_ptr = std::unique_ptr<uint8_t, free_deleter>;

aligned_ptr aligned_buffer(size_t len) {
  void *p = nullptr;
  if (posix_memalign(&p, 4096, len ? len : 1)) die("out of memory");
  return aligned_ptr(static_cast<uint8_t *>(p));
}

void pwrite_all(int fd, const uint8_t *buf, size_t len, uint64_t off) {
  while (len) {
    ssize_t n = pwrite(fd, buf, len, off_t(off));
    if (n < 0) die("write of %zu bytes at %" PRIu64 ": %s", len, off, strerror(errno));
    if (n == 0) die("write at %" PRIu64 " wrote nothing", off);
    buf += n, len -= size_t(n), off += uint64_t(n);
  }
}

void pread_all(int fd, uint8_t *buf, size_t len, uint64_t off) {
  while (len) {
    ssize_t n = pread(fd, buf, len, off_t(off));
    if (n < 0) die("read of %zu bytes at %" PRIu64 ": %s", len, off, strerror(errno));
    if (n == 0) die("read at %" PRIu64 ": unexpected end of file", off);
    buf += n, len -= size_t(n), off += uint64_t(n);
  }
}

void compare(const uint8_t *got, const uint8_t *want, size_t len, uint64_t off) {
  if (!memcmp(got, want, len)) return;
  for (size_t i = 0; i < len; ++i)
    if (got[i] != want[i])
      die("mismatch at byte %" PRIu64 ": read 0x%02x, expected 0x%02x", off + i, got[i],
          want[i]);
}

constexpr size_t chunk = 4 << 20;

int cmd_fill_or_verify(bool fill, int argc, char **argv) {
  if (argc < 4) die("usage: %s FILE OFFSET LENGTH SEED [direct]", fill ? "fill" : "verify");
  uint64_t off = number(argv[1]), len = number(argv[2]), seed = number(argv[3]);
  bool direct = argc > 4 && !strcmp(argv[4], "direct");
  int fd = open_file(argv[0], fill ? O_WRONLY : O_RDONLY, direct);
  aligned_ptr buf_owner = aligned_buffer(chunk), want_owner = aligned_buffer(chunk);
  uint8_t *buf = buf_owner.get(), *want = want_owner.get();
  for (uint64_t done = 0; done < len;) {
    size_t n = size_t(std::min<uint64_t>(chunk, len - done));
    if (fill) {
      fill_pattern(buf, off + done, n, seed);
      pwrite_all(fd, buf, n, off + done);
    } else {
      pread_all(fd, buf, n, off + done);
      fill_pattern(want, off + done, n, seed);
      compare(buf, want, n, off + done);
    }
    done += n;
  }
  if (fill && fsync(fd)) die("fsync: %s", strerror(errno));
  close(fd);
  return 0;
}

int cmd_zeros(int argc, char **argv) {
  if (argc < 3) die("usage: zeros FILE OFFSET LENGTH");
  uint64_t off = number(argv[1]), len = number(argv[2]);
  int fd = open_file(argv[0], O_RDONLY, false);
  std::vector<uint8_t> buf(chunk), zero(chunk, 0);
  for (uint64_t done = 0; done < len;) {
    size_t n = size_t(std::min<uint64_t>(chunk, len - done));
    pread_all(fd, buf.data(), n, off + done);
    compare(buf.data(), zero.data(), n, off + done);
    done += n;
  }
  close(fd);
  return 0;
}

int cmd_random(int argc, char **argv) {
  if (argc < 4) die("usage: random FILE OPS MAXLEN SEED");
  uint64_t ops = number(argv[1]), maxlen = number(argv[2]), seed = number(argv[3]);
  int fd = open_file(argv[0], O_RDWR, false);
  struct stat st;
  if (fstat(fd, &st)) die("stat: %s", strerror(errno));
  uint64_t size = uint64_t(st.st_size);
  // The reference copy of the whole file: what every read must return.
  // The file starts out as the test left it, so read it once first.
  std::vector<uint8_t> shadow(size);
  pread_all(fd, shadow.data(), size, 0);
  std::vector<uint8_t> buf(maxlen);
  std::mt19937_64 rng(seed);
  uint64_t bytes = 0;
  for (uint64_t i = 0; i < ops; ++i) {
    uint64_t len = 1 + rng() % maxlen;
    if (rng() % 4 == 0) len = 1 + rng() % 8;  // many tiny ones too
    if (len > size) len = size;
    uint64_t off = rng() % (size - len + 1);
    if (rng() % 2) {
      fill_pattern(buf.data(), off, len, seed + i);
      pwrite_all(fd, buf.data(), len, off);
      memcpy(&shadow[off], buf.data(), len);
    } else {
      pread_all(fd, buf.data(), len, off);
      compare(buf.data(), &shadow[off], len, off);
    }
    bytes += len;
  }
  // Everything once more, after a flush of the cache to the store.
  if (fsync(fd)) die("fsync: %s", strerror(errno));
  std::vector<uint8_t> all(chunk);
  for (uint64_t off = 0; off < size; off += chunk) {
    size_t n = size_t(std::min<uint64_t>(chunk, size - off));
    pread_all(fd, all.data(), n, off);
    compare(all.data(), &shadow[off], n, off);
  }
  close(fd);
  printf("random: %" PRIu64 " operations, %" PRIu64 " bytes, all reads matched\n", ops, bytes);
  return 0;
}

int cmd_punch(int argc, char **argv) {
  if (argc < 3) die("usage: punch FILE OFFSET LENGTH");
  int fd = open_file(argv[0], O_RDWR, false);
  if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off_t(number(argv[1])),
                off_t(number(argv[2]))))
    die("fallocate PUNCH_HOLE: %s", strerror(errno));
  close(fd);
  return 0;
}

// Opens FILE, reads it whole and closes it, COUNT times: many short-lived
// opens, as monitors reading .stats make.  Every read must return data.
int cmd_reread(int argc, char **argv) {
  if (argc < 2) die("usage: reread FILE COUNT");
  uint64_t count = number(argv[1]);
  char buf[65536];
  for (uint64_t i = 0; i < count; ++i) {
    int fd = open_file(argv[0], O_RDONLY, false);
    ssize_t total = 0, n;
    while ((n = read(fd, buf, sizeof buf)) > 0) total += n;
    if (n < 0) die("read %s: %s", argv[0], strerror(errno));
    if (total == 0) die("read %s: empty on open %" PRIu64, argv[0], i);
    close(fd);
  }
  return 0;
}

// One pass of the swapper: writes a new pattern over every page, then checks
// every page in a random order, so that swap-in is random, not sequential.
void swap_pass(uint8_t *mem, uint64_t pages, uint64_t pass_seed, uint64_t pass,
               std::mt19937_64 &rng) {
  const size_t page = 4096;
  std::vector<uint8_t> want(page);
  for (uint64_t p = 0; p < pages; ++p) fill_pattern(mem + p * page, p * page, page, pass_seed);
  std::vector<uint32_t> order(pages);
  for (uint64_t p = 0; p < pages; ++p) order[p] = uint32_t(p);
  std::shuffle(order.begin(), order.end(), rng);
  for (uint32_t p : order) {
    fill_pattern(want.data(), uint64_t(p) * page, page, pass_seed);
    if (memcmp(mem + uint64_t(p) * page, want.data(), page))
      die("pass %" PRIu64 ": page %u came back changed from swap", pass, p);
  }
}

uint8_t *map_anonymous(uint64_t bytes) {
  auto *mem = static_cast<uint8_t *>(
      mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (mem == MAP_FAILED) die("mmap %" PRIu64 " bytes: %s", bytes, strerror(errno));
  return mem;
}

// Fills MIB of anonymous memory page by page and then checks every page,
// PASSES times over with a new pattern (swapper), or in whole passes until
// SECONDS have gone by (soak): run inside a memory cgroup smaller than MIB,
// every page makes the round trip through swap.
// A soak ends after the pass under way once SIGUSR1 comes: a test whose
// steps are done need not wait out the seconds it asked for.
volatile sig_atomic_t soak_ended = 0;
void end_soak(int) { soak_ended = 1; }

int cmd_swapper(bool timed, int argc, char **argv) {
  if (argc < 3) die(timed ? "usage: soak MIB SECONDS SEED" : "usage: swapper MIB PASSES SEED");
  uint64_t bytes = number(argv[0]) << 20, limit = number(argv[1]), seed = number(argv[2]);
  uint64_t pages = bytes / 4096;
  uint8_t *mem = map_anonymous(bytes);
  std::mt19937_64 rng(seed);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timed ? limit : 0);
  if (timed) signal(SIGUSR1, end_soak);
  uint64_t pass = 0;
  while (timed ? pass == 0 || (!soak_ended && std::chrono::steady_clock::now() < deadline)
               : pass < limit) {
    swap_pass(mem, pages, seed * 1000 + pass, pass, rng);
    ++pass;
  }
  printf("%s: %" PRIu64 " pages x %" PRIu64 " passes verified\n", timed ? "soak" : "swapper",
         pages, pass);
  return 0;
}

// Threads of random writes, reads and hole punches, for a set time.  Each
// thread owns a slice of the file with a shadow copy of it; the slices'
// edges are not block-aligned, so neighbours share blocks and cache lines.
int cmd_stress(int argc, char **argv) {
  if (argc < 4) die("usage: stress FILE THREADS SECONDS SEED");
  unsigned threads = unsigned(number(argv[1]));
  uint64_t seconds = number(argv[2]), seed = number(argv[3]);
  int fd = open_file(argv[0], O_RDWR, false);
  struct stat st;
  if (fstat(fd, &st)) die("stat: %s", strerror(errno));
  uint64_t size = uint64_t(st.st_size);
  uint64_t slice = size / threads - 4093;  // deliberately unaligned
  std::atomic<uint64_t> ops{0}, bytes{0};
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  auto worker = [&](unsigned t) {
    uint64_t base = t * (slice + 4093) + (t ? 1234 : 0);
    std::vector<uint8_t> shadow(slice), buf(1 << 20);
    pread_all(fd, shadow.data(), slice, base);  // whatever is there now
    std::mt19937_64 rng(seed * 7919 + t);
    for (uint64_t i = 0; std::chrono::steady_clock::now() < deadline; ++i) {
      uint64_t len = 1 + rng() % (rng() % 8 ? 65536 : buf.size());
      if (len > slice) len = slice;
      uint64_t off = rng() % (slice - len + 1);
      unsigned kind = unsigned(rng() % 10);
      if (kind < 4) {
        fill_pattern(buf.data(), off, len, seed + i * 131 + t);
        pwrite_all(fd, buf.data(), len, base + off);
        memcpy(&shadow[off], buf.data(), len);
      } else if (kind < 9) {
        pread_all(fd, buf.data(), len, base + off);
        compare(buf.data(), &shadow[off], len, base + off);
      } else {
        if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off_t(base + off),
                      off_t(len)))
          die("fallocate: %s", strerror(errno));
        memset(&shadow[off], 0, len);
      }
      ops.fetch_add(1, std::memory_order_relaxed);
      bytes.fetch_add(len, std::memory_order_relaxed);
    }
    if (fsync(fd)) die("fsync: %s", strerror(errno));
    for (uint64_t off = 0; off < slice; off += buf.size()) {
      size_t n = size_t(std::min<uint64_t>(buf.size(), slice - off));
      pread_all(fd, buf.data(), n, base + off);
      compare(buf.data(), &shadow[off], n, base + off);
    }
  };
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) pool.emplace_back(worker, t);
  for (auto &th : pool) th.join();
  close(fd);
  printf("stress: %u threads, %" PRIu64 " operations, %" PRIu64 " MiB, every read matched\n",
         threads, ops.load(), bytes.load() >> 20);
  return 0;
}

}  // namespace

int main(int argc, char **argv) {
  if (argc < 2) die("usage: vramfs-io fill|verify|zeros|random|punch|swapper|soak|stress|reread ARGS...");
  std::string cmd = argv[1];
  argc -= 2, argv += 2;
  if (cmd == "fill") return cmd_fill_or_verify(true, argc, argv);
  if (cmd == "verify") return cmd_fill_or_verify(false, argc, argv);
  if (cmd == "zeros") return cmd_zeros(argc, argv);
  if (cmd == "random") return cmd_random(argc, argv);
  if (cmd == "punch") return cmd_punch(argc, argv);
  if (cmd == "swapper") return cmd_swapper(false, argc, argv);
  if (cmd == "soak") return cmd_swapper(true, argc, argv);
  if (cmd == "reread") return cmd_reread(argc, argv);
  if (cmd == "stress") return cmd_stress(argc, argv);
  die("unknown command %s", cmd.c_str());
}
