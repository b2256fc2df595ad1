#include "fuse_ops.h"

#include "block_store.h"
#include "extent_map.h"
#include "log.h"
#include "page_cache.h"
#include "stats.h"
#include "worker_pool.h"

#include "config.h"

#include <fuse_lowlevel.h>
#include <linux/falloc.h>
#include <linux/fuse.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <exception>
#include <memory>
#include <new>

namespace vramfs {
namespace {

// Enough requests in flight for a loop device's queue (128 by default) to
// reach the workers: the kernel's defaults are 12 and 9.
constexpr unsigned max_background = 256;
constexpr unsigned congestion_threshold = 192;
// The data file's attributes only change through this daemon.
constexpr double attr_timeout = 1.0;

std::string negotiated;

filesystem &fs_of(fuse_req_t req) { return *static_cast<filesystem *>(fuse_req_userdata(req)); }

timespec now() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ts;
}

// Every callback runs its body through this: a C++ exception must never
// cross into libfuse, and every request must be answered.
template <typename Fn>
void guarded(fuse_req_t req, const char *op, Fn body) {
  try {
    body();
  } catch (const std::bad_alloc &) {
    log_err_limited("%s: out of memory", op);
    fuse_reply_err(req, ENOMEM);
  } catch (const std::exception &e) {
    log_err_limited("%s: %s", op, e.what());
    fuse_reply_err(req, EIO);
  } catch (...) {
    log_err_limited("%s: unknown exception", op);
    fuse_reply_err(req, EIO);
  }
}

bool fill_attr(filesystem &fs, fuse_ino_t ino, struct stat *st) {
  memset(st, 0, sizeof *st);
  st->st_ino = ino;
  st->st_blksize = 4096;
  st->st_atim = st->st_mtim = st->st_ctim = fs.mounted_at;
  st->st_uid = fs.owner_uid;
  st->st_gid = fs.owner_gid;
  switch (ino) {
    case root_ino:
      st->st_mode = S_IFDIR | 0755;
      st->st_nlink = 2;
      return true;
    case data_ino: {
      std::lock_guard lock(fs.attr_mutex);
      st->st_mode = S_IFREG | fs.data_mode;
      st->st_nlink = 1;
      st->st_uid = fs.data_uid;
      st->st_gid = fs.data_gid;
      st->st_size = off_t(fs.store.size());
      uint64_t data = std::min(fs.extents.blocks_with_data() * fs.cache.block_size(),
                               fs.store.size());
      st->st_blocks = blkcnt_t((data + 511) / 512);
      st->st_mtim = fs.data_mtime;
      st->st_ctim = fs.data_ctime;
      return true;
    }
    case stats_ino:
      // Its text is made at open; like files in /proc it has no fixed size.
      st->st_mode = S_IFREG | 0444;
      st->st_nlink = 1;
      return true;
  }
  return false;
}

void reply_entry(fuse_req_t req, fuse_ino_t ino) {
  fuse_entry_param e{};
  e.ino = ino;
  e.attr_timeout = attr_timeout;
  e.entry_timeout = attr_timeout;
  fill_attr(fs_of(req), ino, &e.attr);
  fuse_reply_entry(req, &e);
}

void reply_attr(fuse_req_t req, fuse_ino_t ino) {
  struct stat st;
  if (!fill_attr(fs_of(req), ino, &st)) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  fuse_reply_attr(req, &st, attr_timeout);
}

// The error a request gets for a failed store operation; counted once here.
int io_error(filesystem &fs, int err) {
  stats::add(fs.counters.errors);
  return err == -ENOSPC ? ENOSPC : err == -EINVAL ? EINVAL : EIO;
}

void op_init(void *userdata, fuse_conn_info *conn) {
  conn->max_read = max_request_bytes;  // must match the max_read mount option
  conn->max_background = max_background;
  conn->congestion_threshold = congestion_threshold;
  // Page cache in the kernel would hold a second copy of swapped pages and
  // charge it to whoever faults; every file is direct I/O instead.
  conn->want &= ~(FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE |
                  FUSE_CAP_SPLICE_MOVE);
  if (conn->capable & FUSE_CAP_ASYNC_DIO) conn->want |= FUSE_CAP_ASYNC_DIO;
  negotiated = "max_write " + std::to_string(conn->max_write) + ", max_background " +
               std::to_string(conn->max_background) + ", congestion_threshold " +
               std::to_string(conn->congestion_threshold) + ", async_dio " +
               ((conn->want & FUSE_CAP_ASYNC_DIO) ? "on" : "off");
  static_cast<filesystem *>(userdata)->initialized = true;
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  filesystem &fs = fs_of(req);
  if (parent != root_ino) fuse_reply_err(req, ENOTDIR);
  else if (fs.data_name == name) reply_entry(req, data_ino);
  else if (!strcmp(name, ".stats")) reply_entry(req, stats_ino);
  else fuse_reply_err(req, ENOENT);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info *) { reply_attr(req, ino); }

void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, fuse_file_info *) {
  filesystem &fs = fs_of(req);
  if (ino != data_ino) {
    fuse_reply_err(req, EPERM);
    return;
  }
  // The size is fixed at mount (it is the swap area); truncating to the
  // same size is harmless and allowed.
  if ((to_set & FUSE_SET_ATTR_SIZE) && uint64_t(attr->st_size) != fs.store.size()) {
    fuse_reply_err(req, EPERM);
    return;
  }
  {
    std::lock_guard lock(fs.attr_mutex);
    timespec t = now();
    if (to_set & FUSE_SET_ATTR_MODE) fs.data_mode = attr->st_mode & 07777;
    if (to_set & FUSE_SET_ATTR_UID) fs.data_uid = attr->st_uid;
    if (to_set & FUSE_SET_ATTR_GID) fs.data_gid = attr->st_gid;
    if (to_set & FUSE_SET_ATTR_MTIME) fs.data_mtime = attr->st_mtim;
    if (to_set & FUSE_SET_ATTR_MTIME_NOW) fs.data_mtime = t;
    fs.data_ctime = t;
  }
  reply_attr(req, ino);
}

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info *) {
  filesystem &fs = fs_of(req);
  if (ino != root_ino) {
    fuse_reply_err(req, ENOTDIR);
    return;
  }
  struct entry {
    const char *name;
    fuse_ino_t ino;
    mode_t mode;
  } const entries[] = {{".", root_ino, S_IFDIR},
                       {"..", root_ino, S_IFDIR},
                       {fs.data_name.c_str(), data_ino, S_IFREG},
                       {".stats", stats_ino, S_IFREG}};
  char buf[4096];
  size_t used = 0;
  size = std::min(size, sizeof buf);
  for (off_t i = off; i < off_t(std::size(entries)); ++i) {
    struct stat st {};
    st.st_ino = entries[i].ino;
    st.st_mode = entries[i].mode;
    size_t len = fuse_add_direntry(req, buf + used, size - used, entries[i].name, &st, i + 1);
    if (len > size - used) break;
    used += len;
  }
  fuse_reply_buf(req, buf, used);
}

// Opens the data file with direct I/O and parallel direct writes.
// libfuse 3.14 has no field for FOPEN_PARALLEL_DIRECT_WRITES, so the reply is
// built here; without the flag the kernel serialises every write to the file
// on the inode lock.
void reply_open_data(fuse_req_t req) {
  fuse_open_out out{};
  out.open_flags = FOPEN_DIRECT_IO;
#ifdef FOPEN_PARALLEL_DIRECT_WRITES
  out.open_flags |= FOPEN_PARALLEL_DIRECT_WRITES;
#endif
  iovec iov{&out, sizeof out};
  fuse_reply_iov(req, &iov, 1);
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info *fi) {
  filesystem &fs = fs_of(req);
  guarded(req, "open", [&] {
    if (ino == data_ino) {
      fs.data_opens.fetch_add(1);
      reply_open_data(req);
    } else if (ino == stats_ino) {
      if ((fi->flags & O_ACCMODE) != O_RDONLY) {
        fuse_reply_err(req, EACCES);
        return;
      }
      auto text = std::make_unique<std::string>(
          render_stats(fs.counters, fs.store, fs.extents, fs.cache.block_size(),
                       fs.cache.line_count() * fs.cache.block_size(), fs.cache.dirty_lines(),
                       fs.data_opens.load()));
      fi->fh = reinterpret_cast<uint64_t>(text.get());
      fi->direct_io = 1;
      if (fuse_reply_open(req, fi) == 0) text.release();
    } else {
      fuse_reply_err(req, EISDIR);
    }
  });
}

void op_release(fuse_req_t req, fuse_ino_t ino, fuse_file_info *fi) {
  filesystem &fs = fs_of(req);
  if (ino == data_ino) fs.data_opens.fetch_sub(1);
  else if (ino == stats_ino) delete reinterpret_cast<std::string *>(fi->fh);
  fuse_reply_err(req, 0);
}

void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info *fi) {
  filesystem &fs = fs_of(req);
  worker_context *ctx = current_worker();
  if (ino == stats_ino) {
    // Replied from the worker's own buffer: once the reader has its bytes it
    // may close, and the RELEASE that frees the text can run on another
    // worker while this one is still returning from the reply.
    const std::string &text = *reinterpret_cast<std::string *>(fi->fh);
    size_t start = std::min<size_t>(off, text.size());
    size_t len = std::min({size, text.size() - start, ctx->buffer_size});
    memcpy(ctx->buffer, text.data() + start, len);
    fuse_reply_buf(req, reinterpret_cast<const char *>(ctx->buffer), len);
    return;
  }
  uint64_t file_size = fs.store.size();
  if (uint64_t(off) >= file_size) {
    fuse_reply_buf(req, nullptr, 0);
    return;
  }
  // The kernel never asks for more than max_read, which is the buffer size;
  // anything larger is answered short, which readers handle.
  size_t len = std::min<uint64_t>({uint64_t(size), file_size - off, uint64_t(ctx->buffer_size)});
  if (int err = fs.cache.read(*ctx->channel, off, ctx->buffer, len)) {
    log_err_limited("read of %zu bytes at %lld failed: %s", len, (long long)off, strerror(-err));
    fuse_reply_err(req, io_error(fs, err));
    return;
  }
  stats::add(fs.counters.reads);
  stats::add(fs.counters.read_bytes, len);
  fuse_reply_buf(req, reinterpret_cast<const char *>(ctx->buffer), len);
}

void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
              fuse_file_info *) {
  filesystem &fs = fs_of(req);
  if (ino != data_ino) {
    fuse_reply_err(req, EBADF);
    return;
  }
  uint64_t file_size = fs.store.size();
  if (uint64_t(off) >= file_size) {
    fuse_reply_err(req, size ? EFBIG : 0);
    return;
  }
  size_t len = std::min<uint64_t>(size, file_size - off);  // short write at the end
  if (int err = fs.cache.write(*current_worker()->channel, off, buf, len)) {
    log_err_limited("write of %zu bytes at %lld failed: %s", len, (long long)off,
                    strerror(-err));
    fuse_reply_err(req, io_error(fs, err));
    return;
  }
  stats::add(fs.counters.writes);
  stats::add(fs.counters.write_bytes, len);
  fuse_reply_write(req, len);
}

void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t length,
                  fuse_file_info *) {
  filesystem &fs = fs_of(req);
  if (ino != data_ino) {
    fuse_reply_err(req, EBADF);
    return;
  }
  uint64_t file_size = fs.store.size();
  uint64_t start = std::min<uint64_t>(off, file_size);
  uint64_t end = std::min<uint64_t>(uint64_t(off) + uint64_t(length), file_size);

  bool discard = mode == (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE) ||
                 (mode & ~FALLOC_FL_KEEP_SIZE) == FALLOC_FL_ZERO_RANGE;
  bool preallocate = (mode & ~FALLOC_FL_KEEP_SIZE) == 0;
  if (!discard && !preallocate) {
    fuse_reply_err(req, EOPNOTSUPP);
    return;
  }
  // The file never grows.
  if (!(mode & FALLOC_FL_KEEP_SIZE) && uint64_t(off) + uint64_t(length) > file_size) {
    fuse_reply_err(req, EFBIG);
    return;
  }
  if (end <= start) {
    fuse_reply_err(req, 0);
    return;
  }
  if (preallocate) {
    // In lazy mode, take the memory now; reserved mode already has it.
    int err = fs.store.ensure_backed(start, end - start);
    fuse_reply_err(req, -err);
    return;
  }
  // What a loop device sends: PUNCH_HOLE for discard, ZERO_RANGE for write
  // zeroes.  Either way the range then reads as zeros and holds no data.
  if (int err = fs.cache.discard(*current_worker()->channel, start, end - start)) {
    fuse_reply_err(req, io_error(fs, err));
    return;
  }
  stats::add(fs.counters.discards);
  stats::add(fs.counters.discard_bytes, end - start);
  fuse_reply_err(req, 0);
}

void op_fsync(fuse_req_t req, fuse_ino_t ino, int, fuse_file_info *) {
  filesystem &fs = fs_of(req);
  if (ino != data_ino) {
    fuse_reply_err(req, 0);
    return;
  }
  stats::add(fs.counters.fsyncs);
  int err = fs.cache.flush(*current_worker()->channel);
  fuse_reply_err(req, err ? io_error(fs, err) : 0);
}

void op_statfs(fuse_req_t req, fuse_ino_t) {
  filesystem &fs = fs_of(req);
  struct statvfs st {};
  uint64_t bsize = fs.cache.block_size();
  st.f_bsize = bsize;
  st.f_frsize = bsize;
  st.f_blocks = (fs.store.size() + bsize - 1) / bsize;
  st.f_bfree = st.f_bavail = st.f_blocks - std::min<uint64_t>(fs.extents.blocks_with_data(),
                                                                st.f_blocks);
  st.f_files = 2;
  st.f_ffree = st.f_favail = 0;
  st.f_namemax = 255;
  fuse_reply_statfs(req, &st);
}

// The directory holds exactly two files; nothing can be created or removed.
void op_mknod(fuse_req_t req, fuse_ino_t, const char *, mode_t, dev_t) {
  fuse_reply_err(req, EPERM);
}
void op_mkdir(fuse_req_t req, fuse_ino_t, const char *, mode_t) { fuse_reply_err(req, EPERM); }
void op_unlink(fuse_req_t req, fuse_ino_t, const char *) { fuse_reply_err(req, EPERM); }
void op_rename(fuse_req_t req, fuse_ino_t, const char *, fuse_ino_t, const char *,
               unsigned int) {
  fuse_reply_err(req, EPERM);
}
void op_create(fuse_req_t req, fuse_ino_t, const char *, mode_t, fuse_file_info *) {
  fuse_reply_err(req, EPERM);
}

const fuse_lowlevel_ops operations = [] {
  fuse_lowlevel_ops ops{};
  ops.init = op_init;
  ops.lookup = op_lookup;
  ops.getattr = op_getattr;
  ops.setattr = op_setattr;
  ops.readdir = op_readdir;
  ops.open = op_open;
  ops.release = op_release;
  ops.read = op_read;
  ops.write = op_write;
  ops.fallocate = op_fallocate;
  ops.fsync = op_fsync;
  ops.statfs = op_statfs;
  ops.mknod = op_mknod;
  ops.mkdir = op_mkdir;
  ops.unlink = op_unlink;
  ops.rmdir = op_unlink;
  ops.rename = op_rename;
  ops.create = op_create;
  return ops;
}();

}  // namespace

filesystem::filesystem(block_store &s, extent_map &e, page_cache &c, stats &st,
                       std::string file_name)
    : store(s),
      extents(e),
      cache(c),
      counters(st),
      data_name(std::move(file_name)),
      owner_uid(getuid()),
      owner_gid(getgid()),
      mounted_at(now()),
      data_uid(owner_uid),
      data_gid(owner_gid),
      data_mtime(mounted_at),
      data_ctime(mounted_at) {}

const fuse_lowlevel_ops &filesystem_operations() { return operations; }

std::string describe_connection() { return negotiated; }

}  // namespace vramfs
