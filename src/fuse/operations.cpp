#include "fuse/operations.h"

#include "cache/extent_map.h"
#include "cache/page_cache.h"
#include "common/log.h"
#include "common/monotonic_clock.h"
#include "common/options.h"
#include "common/prepare_grow.h"
#include "common/stats.h"
#include "fuse/stats_text.h"
#include "store/block_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <exception>
#include <new>

namespace vramfs::fuse {
namespace {

// Enough requests in flight for a loop device's queue to reach the daemon:
// loop's direct I/O reaches FUSE as background requests, and the kernel's
// defaults (12 and 9) would hold all but a dozen back.
constexpr uint16_t max_background = 1024;
constexpr uint16_t congestion_threshold = 768;
// In pages of this machine: the kernel sizes io_uring payloads as
// max_pages pages, which must fit the 1 MiB buffers (64 KiB pages too).
const uint32_t max_pages = uint32_t(max_request_bytes / uint64_t(sysconf(_SC_PAGESIZE)));
// The attributes only change through this daemon.
constexpr uint64_t attr_valid_seconds = 1;

timespec now() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ts;
}

// The body of a reply, built in place in the output buffer.
template <typename T>
answer reply_with(std::span<std::byte> out, const T &value) {
  memcpy(out.data(), &value, sizeof value);
  return {0, sizeof value};
}

answer error(int err) { return {-err, 0}; }

// The error a request gets for a failed store operation; counted once here.
answer io_error(filesystem &fs, int err) {
  stats::add(fs.counters.mine().errors);
  return error(err == -ENOSPC ? ENOSPC : err == -EINVAL ? EINVAL : EIO);
}

void set_time(uint64_t *sec, uint32_t *nsec, const timespec &ts) {
  *sec = uint64_t(ts.tv_sec);
  *nsec = uint32_t(ts.tv_nsec);
}

bool fill_attr(filesystem &fs, uint64_t ino, attr *a) {
  *a = attr{};
  a->ino = ino;
  a->blksize = 4096;
  a->uid = fs.owner_uid;
  a->gid = fs.owner_gid;
  set_time(&a->atime, &a->atimensec, fs.state.mounted_at);
  set_time(&a->mtime, &a->mtimensec, fs.state.mounted_at);
  set_time(&a->ctime, &a->ctimensec, fs.state.mounted_at);
  switch (ino) {
    case root_ino:
      a->mode = S_IFDIR | 0755;
      a->nlink = 2;
      return true;
    case data_ino: {
      // Mode 0600 and the mounting user, always: the swap area must not be
      // readable by others, and swapon refuses looser modes with a warning.
      a->mode = S_IFREG | 0600;
      a->nlink = 1;
      a->size = fs.store.size();
      uint64_t data = std::min(fs.extents.blocks_with_data() * fs.cache.block_size(),
                               fs.store.size());
      a->blocks = (data + 511) / 512;
      std::lock_guard lock(fs.attr_mutex);
      set_time(&a->mtime, &a->mtimensec, fs.state.data_mtime);
      set_time(&a->ctime, &a->ctimensec, fs.state.data_ctime);
      return true;
    }
    case stats_ino:
      // Its text is made at open; like files in /proc it has no fixed size.
      a->mode = S_IFREG | 0444;
      a->nlink = 1;
      return true;
  }
  return false;
}

answer do_init(filesystem &fs, const request &req, std::span<std::byte> out) {
  auto in = req.argument_as<init_in>();
  init_out o{};
  o.major = kernel_major;
  if (in.major < kernel_major) {
    fs.init_refusal = "the kernel speaks FUSE " + std::to_string(in.major) + "." +
                      std::to_string(in.minor) + ", older than " + std::to_string(kernel_major);
    return error(EPROTO);
  }
  // A newer major: answer with ours and the kernel asks again in it.
  if (in.major > kernel_major) return reply_with(out, o);

  uint64_t offered = in.flags;
  if (in.flags & init_ext) offered |= uint64_t(in.flags2) << 32;
  uint64_t want = init_async_dio | init_max_pages | init_big_writes;
  if (fs.wish.io_uring) {
    if (!(offered & init_over_io_uring)) {
      fs.init_refusal = "the kernel did not offer FUSE over io_uring in INIT "
                        "(is /sys/module/fuse/parameters/enable_uring Y?)";
      return error(EPROTO);
    }
    want |= init_ext | init_over_io_uring;
  }
  // Failover asks the kernel to send again what a dead server had read but
  // not answered; without that, a takeover would strand those requests.
  if (fs.wish.failover && !(offered & init_has_resend)) {
    fs.init_refusal = "failover needs FUSE_NOTIFY_RESEND, which this kernel does not offer "
                      "(Linux 6.9 or later); mount without -o failover";
    return error(EPROTO);
  }
  // Never writeback_cache: the kernel's page cache would hold a second
  // copy of every swapped page and charge it to whoever faults.
  uint64_t granted = want & offered;
  o.minor = std::min(in.minor, kernel_minor);
  o.max_readahead = in.max_readahead;
  o.flags = uint32_t(granted);
  o.flags2 = uint32_t(granted >> 32);
  o.max_background = max_background;
  o.congestion_threshold = congestion_threshold;
  o.max_write = max_request_bytes;
  o.time_gran = 1;
  o.max_pages = max_pages;

  connection_terms &t = fs.state.terms;
  t.minor = o.minor;
  t.max_write = o.max_write;
  t.max_pages = (granted & init_max_pages) ? o.max_pages : 32;
  t.max_background = o.max_background;
  t.congestion_threshold = o.congestion_threshold;
  t.async_dio = granted & init_async_dio;
  t.io_uring = granted & init_over_io_uring;
  fs.state.initialized.store(1, std::memory_order_release);
  return reply_with(out, o);
}

answer reply_entry(filesystem &fs, uint64_t ino, std::span<std::byte> out) {
  entry_out e{};
  e.nodeid = ino;
  e.generation = 1;
  e.entry_valid = e.attr_valid = attr_valid_seconds;
  fill_attr(fs, ino, &e.attr);
  return reply_with(out, e);
}

answer reply_attr(filesystem &fs, uint64_t ino, std::span<std::byte> out) {
  attr_out a{};
  a.attr_valid = attr_valid_seconds;
  if (!fill_attr(fs, ino, &a.attr)) return error(ENOENT);
  return reply_with(out, a);
}

answer do_lookup(filesystem &fs, const request &req, std::span<std::byte> out) {
  if (req.header.nodeid != root_ino) return error(ENOTDIR);
  auto name = req.name();  // read before the output overwrites the payload
  if (!name) return error(EINVAL);
  if (*name == fs.data_name) return reply_entry(fs, data_ino, out);
  if (*name == ".stats") return reply_entry(fs, stats_ino, out);
  return error(ENOENT);
}

// Why a resize, or the memory for one, was refused.
std::string resize_refusal(const filesystem &fs, int err) {
  return err == -EFBIG    ? "it may not grow beyond max_size=" + format_size(fs.store.max_size())
         : err == -EINVAL ? "not a whole number of " + format_size(fs.cache.block_size()) + " blocks"
                          : std::string(strerror(-err));
}

// truncate: the file grows or shrinks within max_size (vramswap resize
// takes stripes off or adds them).  Shrinking drops the data past the new
// end and gives its memory back; growing in reserved mode takes the memory
// of the new part at once, or answers ENOSPC and changes nothing.
int resize_data_file(filesystem &fs, uint64_t size) {
  uint64_t old = fs.store.size();
  if (size == old) return 0;
  int err = fs.cache.resize(size, [&fs, size, old](uint64_t s) {
    // A test's crash half-way: a shrink recorded and nothing done, or a
    // grow's memory taken and not recorded.
    bool crash = fs.resize_crash_countdown.load() && fs.resize_crash_countdown.fetch_sub(1) == 1;
    if (size < old) fs.state.file_size.store(s);
    if (crash) {
      log_err("injected crash in the resize from %llu to %llu", (unsigned long long)old,
              (unsigned long long)size);
      abort();
    }
    if (size > old) fs.state.file_size.store(s);
  });
  if (err) {
    std::string why = resize_refusal(fs, err);
    log_warn("%s: cannot %s it from %s to %s: %s", fs.data_name.c_str(),
             size > old ? "grow" : "shrink", format_size(old).c_str(), format_size(size).c_str(),
             why.c_str());
    return err;
  }
  fs.state.last_resize_from.store(old);
  fs.state.last_resize_to.store(size);
  fs.state.last_resize_time.store(int64_t(time(nullptr)));
  fs.state.resizes.fetch_add(1);
  log_info("%s: %s from %s to %s; %s of memory held", fs.data_name.c_str(),
           size > old ? "grown" : "shrunk", format_size(old).c_str(), format_size(size).c_str(),
           format_size(fs.store.held_bytes()).c_str());
  return 0;
}

answer do_setattr(filesystem &fs, const request &req, std::span<std::byte> out) {
  auto in = req.argument_as<setattr_in>();
  uint64_t ino = req.header.nodeid;
  if (ino != data_ino) return error(EPERM);
  // Mode and owner are fixed (see fill_attr); setting them to what they
  // are is allowed, as chmod -R and cp -p do.  Checked before the size, so
  // that a refused request changes nothing.
  if ((in.valid & fattr_mode) && (in.mode & 07777) != 0600) return error(EPERM);
  if ((in.valid & fattr_uid) && in.uid != fs.owner_uid) return error(EPERM);
  if ((in.valid & fattr_gid) && in.gid != fs.owner_gid) return error(EPERM);
  if (in.valid & fattr_size)
    if (int err = resize_data_file(fs, in.size)) return error(-err);
  {
    std::lock_guard lock(fs.attr_mutex);
    timespec t = now();
    if (in.valid & fattr_mtime) fs.state.data_mtime = {time_t(in.mtime), long(in.mtimensec)};
    if (in.valid & fattr_mtime_now) fs.state.data_mtime = t;
    fs.state.data_ctime = t;
  }
  return reply_attr(fs, ino, out);
}

answer do_open(filesystem &fs, const request &req, std::span<std::byte> out) {
  auto in = req.argument_as<open_in>();
  open_out o{};
  switch (req.header.nodeid) {
    case data_ino:
      // The handle is the request's own id, kept in the shared state
      // before the answer: the same OPEN sent again after a takeover finds
      // it there and counts once.
      o.fh = fs.state.open_data(req.header.unique & ~unique_resend);
      if (!o.fh) return error(ENFILE);
      // Without parallel direct writes the kernel serializes every write
      // to the file (every swap-out) on the inode lock.
      o.open_flags = fopen_direct_io | fopen_parallel_direct_writes;
      return reply_with(out, o);
    case stats_ino: {
      if ((in.flags & O_ACCMODE) != O_RDONLY) return error(EACCES);
      std::string text = render_stats_text(fs);
      std::lock_guard lock(fs.stats_texts_mutex);
      o.fh = fs.next_stats_handle++;
      fs.stats_texts.emplace(o.fh, std::move(text));
      o.open_flags = fopen_direct_io;
      return reply_with(out, o);
    }
    case root_ino: return error(EISDIR);
  }
  return error(ENOENT);
}

answer do_release(filesystem &fs, const request &req) {
  auto in = req.argument_as<release_in>();
  if (req.header.nodeid == data_ino) {
    fs.state.release_data(in.fh);  // a second RELEASE of it finds nothing
  } else if (req.header.nodeid == stats_ino) {
    std::lock_guard lock(fs.stats_texts_mutex);
    fs.stats_texts.erase(in.fh);
  }
  return {};
}

answer read_stats(filesystem &fs, const read_in &in, std::span<std::byte> out) {
  std::lock_guard lock(fs.stats_texts_mutex);
  auto it = fs.stats_texts.find(in.fh);
  if (it == fs.stats_texts.end()) return error(EBADF);
  const std::string &text = it->second;
  size_t start = std::min<uint64_t>(in.offset, text.size());
  size_t len = std::min({size_t(in.size), text.size() - start, out.size()});
  memcpy(out.data(), text.data() + start, len);
  return {0, len};
}

// Adds the time from its construction to its end to a counter.
class timed {
 public:
  explicit timed(stats::counter &c) : counter_(c), start_(monotonic_ns()) {}
  ~timed() { stats::add(counter_, monotonic_ns() - start_); }

 private:
  stats::counter &counter_;
  uint64_t start_;
};

answer do_read(filesystem &fs, store_channel &ch, const request &req, std::span<std::byte> out) {
  auto in = req.argument_as<read_in>();
  if (req.header.nodeid == stats_ino) return read_stats(fs, in, out);
  if (req.header.nodeid != data_ino) return error(EISDIR);
  uint64_t size = fs.store.size();
  if (in.offset >= size) return {};
  // The kernel never asks for more than max_pages; anything larger is
  // answered short, which readers handle.
  size_t len = std::min<uint64_t>({in.size, size - in.offset, out.size()});
  timed t(fs.counters.mine().read_ns);
  if (int err = fs.cache.read(ch, in.offset, out.data(), len)) {
    log_err_limited("read of %zu bytes at %llu failed: %s", len, (unsigned long long)in.offset,
                    strerror(-err));
    return io_error(fs, err);
  }
  stats::add(fs.counters.mine().reads);
  stats::add(fs.counters.mine().read_bytes, len);
  return {0, len};
}

answer do_write(filesystem &fs, store_channel &ch, const request &req, std::span<std::byte> out) {
  auto in = req.argument_as<write_in>();
  if (req.header.nodeid != data_ino) return error(EBADF);
  if (in.size > req.payload.size()) return error(EINVAL);
  uint64_t size = fs.store.size();
  if (in.offset >= size) return in.size ? error(EFBIG) : reply_with(out, write_out{});
  size_t len = std::min<uint64_t>(in.size, size - in.offset);  // short write at the end
  timed t(fs.counters.mine().write_ns);
  if (int err = fs.cache.write(ch, in.offset, req.payload.data(), len)) {
    log_err_limited("write of %zu bytes at %llu failed: %s", len, (unsigned long long)in.offset,
                    strerror(-err));
    return io_error(fs, err);
  }
  stats::add(fs.counters.mine().writes);
  stats::add(fs.counters.mine().write_bytes, len);
  return reply_with(out, write_out{uint32_t(len), 0});
}

answer do_fallocate(filesystem &fs, store_channel &ch, const request &req) {
  auto in = req.argument_as<fallocate_in>();
  if (req.header.nodeid != data_ino) return error(EBADF);
  uint64_t size = fs.store.size();
  if (in.length > UINT64_MAX - in.offset) return error(EINVAL);
  uint64_t start = std::min<uint64_t>(in.offset, size);
  uint64_t end = std::min<uint64_t>(in.offset + in.length, size);
  uint32_t mode = in.mode;

  bool discard = mode == (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE) ||
                 (mode & ~FALLOC_FL_KEEP_SIZE) == FALLOC_FL_ZERO_RANGE;
  bool preallocate = (mode & ~FALLOC_FL_KEEP_SIZE) == 0;
  if (!discard && !preallocate) return error(EOPNOTSUPP);
  // The file never grows.
  if (!(mode & FALLOC_FL_KEEP_SIZE) && in.offset + in.length > size) return error(EFBIG);
  if (end <= start) return {};
  if (preallocate) {
    // In lazy mode, take the memory now; reserved mode already has it.
    if (int err = fs.cache.preallocate(start, end - start)) return io_error(fs, err);
    return {};
  }
  // What a loop device sends: PUNCH_HOLE for discard, ZERO_RANGE for write
  // zeroes.  Either way the range then reads as zeros and holds no data.
  if (int err = fs.cache.discard(ch, start, end - start)) return io_error(fs, err);
  stats::add(fs.counters.mine().discards);
  stats::add(fs.counters.mine().discard_bytes, end - start);
  return {};
}

// vramfs --prepare-grow (common/prepare_grow.h): the memory of a grow,
// taken before the truncate, which the kernel runs under the file's lock.
answer do_ioctl(filesystem &fs, const request &req, std::span<std::byte> out) {
  auto in = req.argument_as<ioctl_in>();
  if (req.header.nodeid != data_ino || in.cmd != prepare_grow_ioctl) return error(ENOTTY);
  // It takes memory: the owner's (or root's) alone, as a truncate is.
  if (req.header.uid != fs.owner_uid && req.header.uid != 0) return error(EPERM);
  uint64_t size = 0;
  if (in.in_size < sizeof size || req.payload.size() < sizeof size) return error(EINVAL);
  memcpy(&size, req.payload.data(), sizeof size);
  if (int err = fs.cache.reserve_for_grow(size)) {
    log_warn("%s: cannot take the memory to grow it to %s: %s", fs.data_name.c_str(),
             format_size(size).c_str(), resize_refusal(fs, err).c_str());
    return error(-err);
  }
  return reply_with(out, ioctl_out{});
}

answer do_fsync(filesystem &fs, store_channel &ch, const request &req) {
  if (req.header.nodeid != data_ino) return {};
  stats::add(fs.counters.mine().fsyncs);
  if (int err = fs.cache.flush(ch)) return io_error(fs, err);
  return {};
}

answer do_statfs(filesystem &fs, std::span<std::byte> out) {
  statfs_out s{};
  uint64_t bsize = fs.cache.block_size();
  s.st.bsize = s.st.frsize = uint32_t(bsize);
  s.st.blocks = (fs.store.size() + bsize - 1) / bsize;
  s.st.bfree = s.st.bavail =
      s.st.blocks - std::min<uint64_t>(fs.extents.blocks_with_data(), s.st.blocks);
  // No inode counts: df -i then shows "-" instead of a full filesystem
  // that sets off monitoring.
  s.st.files = s.st.ffree = 0;
  s.st.namelen = 255;
  return reply_with(out, s);
}

answer do_opendir(const request &req, std::span<std::byte> out) {
  if (req.header.nodeid != root_ino) return error(ENOTDIR);
  return reply_with(out, open_out{});
}

// One fuse_dirent, padded to 8 bytes; 0 when it does not fit.
size_t add_dirent(std::span<std::byte> out, const std::string &name, uint64_t ino, uint32_t type,
                  uint64_t next_offset) {
  size_t len = (sizeof(dirent) + name.size() + 7) & ~size_t(7);
  if (len > out.size()) return 0;
  memset(out.data(), 0, len);
  dirent d{ino, next_offset, uint32_t(name.size()), type};
  memcpy(out.data(), &d, sizeof d);
  memcpy(out.data() + sizeof d, name.data(), name.size());
  return len;
}

answer do_readdir(filesystem &fs, const request &req, std::span<std::byte> out) {
  auto in = req.argument_as<read_in>();
  if (req.header.nodeid != root_ino) return error(ENOTDIR);
  struct entry {
    std::string name;
    uint64_t ino;
  } const entries[] = {{".", root_ino}, {"..", root_ino}, {fs.data_name, data_ino},
                       {".stats", stats_ino}};
  std::span<std::byte> room = out.first(std::min<size_t>(in.size, out.size()));
  size_t used = 0;
  for (uint64_t i = in.offset; i < std::size(entries); ++i) {
    uint32_t type = entries[i].ino == root_ino ? DT_DIR : DT_REG;
    size_t len = add_dirent(room.subspan(used), entries[i].name, entries[i].ino, type, i + 1);
    if (!len) break;
    used += len;
  }
  return {0, used};
}

answer do_lseek(filesystem &fs, const request &req, std::span<std::byte> out) {
  auto in = req.argument_as<lseek_in>();
  if (req.header.nodeid != data_ino) return error(EINVAL);
  // The kernel handles SEEK_SET, SEEK_CUR and SEEK_END itself.
  if (in.whence != SEEK_DATA && in.whence != SEEK_HOLE) return error(EINVAL);
  uint64_t size = fs.store.size();
  if (in.offset >= size) return error(ENXIO);
  uint64_t bs = fs.cache.block_size();
  uint64_t from = in.offset / bs;
  uint64_t block = in.whence == SEEK_DATA ? fs.extents.next_with_data(from)
                                          : fs.extents.next_without_data(from);
  if (block >= fs.extents.blocks()) {
    if (in.whence == SEEK_DATA) return error(ENXIO);
    return reply_with(out, lseek_out{size});  // the end of the file is a hole
  }
  return reply_with(out, lseek_out{std::max<uint64_t>(in.offset, std::min(block * bs, size))});
}

answer dispatch_unguarded(filesystem &fs, store_channel &ch, const request &req,
                          std::span<std::byte> out) {
  if (!req.has_whole_argument() && req.header.opcode != op_init) return error(EINVAL);
  switch (req.header.opcode) {
    case op_init: return do_init(fs, req, out);
    case op_lookup: return do_lookup(fs, req, out);
    case op_getattr: return reply_attr(fs, req.header.nodeid, out);
    case op_setattr: return do_setattr(fs, req, out);
    case op_open: return do_open(fs, req, out);
    case op_read: return do_read(fs, ch, req, out);
    case op_write: return do_write(fs, ch, req, out);
    case op_fallocate: return do_fallocate(fs, ch, req);
    case op_fsync: return do_fsync(fs, ch, req);
    case op_flush:
    case op_fsyncdir:
    case op_releasedir:
    case op_destroy: return {};
    case op_release: return do_release(fs, req);
    case op_opendir: return do_opendir(req, out);
    case op_readdir: return do_readdir(fs, req, out);
    case op_statfs: return do_statfs(fs, out);
    case op_lseek: return do_lseek(fs, req, out);
    case op_ioctl: return do_ioctl(fs, req, out);
    // The directory holds exactly two files: nothing is created, linked,
    // renamed or removed.
    case op_mknod:
    case op_mkdir:
    case op_symlink:
    case op_link:
    case op_unlink:
    case op_rmdir:
    case op_rename:
    case op_rename2:
    case op_create:
    case op_tmpfile: return error(EPERM);
    // Forgets need no answer: the inodes are fixed.  An interrupt targets
    // a request that is answered soon anyway.
    case op_forget:
    case op_batch_forget:
    case op_interrupt: return {0, 0, false};
    default: return error(ENOSYS);  // the kernel stops asking for most
  }
}

}  // namespace

filesystem::filesystem(block_store &s, extent_map &e, page_cache &c, mount_state &m,
                       std::string file_name, connection_wish w)
    : store(s),
      extents(e),
      cache(c),
      state(m),
      counters(m.counters),
      data_name(std::move(file_name)),
      wish(w),
      owner_uid(getuid()),
      owner_gid(getgid()) {}

// A test's crash loop: this server dies on the request it is told to.
static void count_down_to_crash(filesystem &fs, const request &req) {
  if (req.header.opcode != op_read && req.header.opcode != op_write) return;
  if (fs.crash_countdown.fetch_sub(1) == 1) {
    log_err("injected crash on request %llu", (unsigned long long)req.header.unique);
    abort();
  }
}

static void note_first_answer(filesystem &fs) {
  if (!fs.first_answer_pending.exchange(false)) return;
  uint64_t death = fs.state.last_death_us.load();
  uint64_t now = monotonic_ns() / 1000;
  if (death && now > death) fs.state.last_pause_us.store(now - death);
}

answer dispatch(filesystem &fs, store_channel &ch, const request &req, std::span<std::byte> out) {
  if (fs.first_answer_pending.load(std::memory_order_relaxed)) note_first_answer(fs);
  if (fs.crash_countdown.load(std::memory_order_relaxed)) count_down_to_crash(fs, req);
  // Every request is answered, and no C++ exception crosses into the
  // transport loop.
  try {
    return dispatch_unguarded(fs, ch, req, out);
  } catch (const std::bad_alloc &) {
    log_err_limited("opcode %u: out of memory", req.header.opcode);
    return error(ENOMEM);
  } catch (const std::exception &e) {
    log_err_limited("opcode %u: %s", req.header.opcode, e.what());
    return error(EIO);
  } catch (...) {
    log_err_limited("opcode %u: unknown exception", req.header.opcode);
    return error(EIO);
  }
}

std::string describe(const connection_terms &t) {
  return "FUSE 7." + std::to_string(t.minor) + ", max_write " + std::to_string(t.max_write) +
         ", max_pages " + std::to_string(t.max_pages) + ", max_background " +
         std::to_string(t.max_background) + ", congestion_threshold " +
         std::to_string(t.congestion_threshold) + ", async_dio " +
         (t.async_dio ? "on" : "off");
}

}  // namespace vramfs::fuse
