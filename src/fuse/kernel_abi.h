// The FUSE protocol as the kernel speaks it: the requests and replies that
// vramfs reads and writes on /dev/fuse and on FUSE-over-io_uring rings.
//
// Written here rather than taken from <linux/fuse.h>: the build machines'
// headers (Debian 12: protocol 7.38) predate the ring (7.42) and RESEND
// (7.40), and the daemon must speak what the running kernel (6.18: 7.45)
// offers.  Every structure is checked against the size the kernel expects.
#pragma once

#include <cstddef>
#include <cstdint>

namespace vramfs::fuse {

// The protocol vramfs implements; the kernel uses the lower of its own minor
// and this one.
constexpr uint32_t kernel_major = 7;
constexpr uint32_t kernel_minor = 45;

enum opcode : uint32_t {
  op_lookup = 1,
  op_forget = 2,
  op_getattr = 3,
  op_setattr = 4,
  op_readlink = 5,
  op_symlink = 6,
  op_mknod = 8,
  op_mkdir = 9,
  op_unlink = 10,
  op_rmdir = 11,
  op_rename = 12,
  op_link = 13,
  op_open = 14,
  op_read = 15,
  op_write = 16,
  op_statfs = 17,
  op_release = 18,
  op_fsync = 20,
  op_setxattr = 21,
  op_getxattr = 22,
  op_listxattr = 23,
  op_removexattr = 24,
  op_flush = 25,
  op_init = 26,
  op_opendir = 27,
  op_readdir = 28,
  op_releasedir = 29,
  op_fsyncdir = 30,
  op_access = 34,
  op_create = 35,
  op_interrupt = 36,
  op_destroy = 38,
  op_ioctl = 39,
  op_batch_forget = 42,
  op_fallocate = 43,
  op_readdirplus = 44,
  op_rename2 = 45,
  op_lseek = 46,
  op_tmpfile = 51,
};

// fuse_init_in.flags and fuse_init_out.flags (the low 32 bits), and flags2
// (the high 32, valid only with init_ext).
enum init_flag : uint64_t {
  init_async_read = 1ull << 0,
  init_big_writes = 1ull << 5,
  init_async_dio = 1ull << 15,
  init_writeback_cache = 1ull << 16,
  init_max_pages = 1ull << 22,
  init_ext = 1ull << 30,
  init_has_resend = 1ull << 39,
  init_over_io_uring = 1ull << 41,
};

// fuse_open_out.open_flags
enum open_flag : uint32_t {
  fopen_direct_io = 1u << 0,
  fopen_parallel_direct_writes = 1u << 6,
};

// fuse_setattr_in.valid
enum setattr_valid : uint32_t {
  fattr_mode = 1u << 0,
  fattr_uid = 1u << 1,
  fattr_gid = 1u << 2,
  fattr_size = 1u << 3,
  fattr_atime = 1u << 4,
  fattr_mtime = 1u << 5,
  fattr_fh = 1u << 6,
  fattr_atime_now = 1u << 7,
  fattr_mtime_now = 1u << 8,
  fattr_lockowner = 1u << 9,
  fattr_ctime = 1u << 10,
  fattr_kill_suidgid = 1u << 11,
};

// Notifications the daemon sends with unique 0 and the code in error.
enum notify_code : int32_t {
  notify_resend = 7,
};

// A resent request (after FUSE_NOTIFY_RESEND) carries this bit in unique;
// the reply must carry it too.
constexpr uint64_t unique_resend = 1ull << 63;

// The smallest read buffer the kernel accepts on /dev/fuse.
constexpr size_t min_read_buffer = 8192;

struct in_header {
  uint32_t len;
  uint32_t opcode;
  uint64_t unique;
  uint64_t nodeid;
  uint32_t uid;
  uint32_t gid;
  uint32_t pid;
  uint16_t total_extlen;
  uint16_t padding;
};

struct out_header {
  uint32_t len;
  int32_t error;  // 0 or a negative errno; a notify_code when unique is 0
  uint64_t unique;
};

struct init_in {
  uint32_t major;
  uint32_t minor;
  uint32_t max_readahead;
  uint32_t flags;
  uint32_t flags2;
  uint32_t unused[11];
};

struct init_out {
  uint32_t major;
  uint32_t minor;
  uint32_t max_readahead;
  uint32_t flags;
  uint16_t max_background;
  uint16_t congestion_threshold;
  uint32_t max_write;
  uint32_t time_gran;
  uint16_t max_pages;
  uint16_t map_alignment;
  uint32_t flags2;
  uint32_t max_stack_depth;
  uint16_t request_timeout;
  uint16_t unused[11];
};

struct attr {
  uint64_t ino;
  uint64_t size;
  uint64_t blocks;
  uint64_t atime;
  uint64_t mtime;
  uint64_t ctime;
  uint32_t atimensec;
  uint32_t mtimensec;
  uint32_t ctimensec;
  uint32_t mode;
  uint32_t nlink;
  uint32_t uid;
  uint32_t gid;
  uint32_t rdev;
  uint32_t blksize;
  uint32_t flags;
};

struct entry_out {
  uint64_t nodeid;
  uint64_t generation;
  uint64_t entry_valid;
  uint64_t attr_valid;
  uint32_t entry_valid_nsec;
  uint32_t attr_valid_nsec;
  struct attr attr;
};

struct getattr_in {
  uint32_t getattr_flags;
  uint32_t dummy;
  uint64_t fh;
};

struct attr_out {
  uint64_t attr_valid;
  uint32_t attr_valid_nsec;
  uint32_t dummy;
  struct attr attr;
};

struct setattr_in {
  uint32_t valid;
  uint32_t padding;
  uint64_t fh;
  uint64_t size;
  uint64_t lock_owner;
  uint64_t atime;
  uint64_t mtime;
  uint64_t ctime;
  uint32_t atimensec;
  uint32_t mtimensec;
  uint32_t ctimensec;
  uint32_t mode;
  uint32_t unused4;
  uint32_t uid;
  uint32_t gid;
  uint32_t unused5;
};

struct open_in {
  uint32_t flags;
  uint32_t open_flags;
};

struct open_out {
  uint64_t fh;
  uint32_t open_flags;
  int32_t backing_id;
};

struct release_in {
  uint64_t fh;
  uint32_t flags;
  uint32_t release_flags;
  uint64_t lock_owner;
};

struct flush_in {
  uint64_t fh;
  uint32_t unused;
  uint32_t padding;
  uint64_t lock_owner;
};

struct read_in {
  uint64_t fh;
  uint64_t offset;
  uint32_t size;
  uint32_t read_flags;
  uint64_t lock_owner;
  uint32_t flags;
  uint32_t padding;
};

struct write_in {
  uint64_t fh;
  uint64_t offset;
  uint32_t size;
  uint32_t write_flags;
  uint64_t lock_owner;
  uint32_t flags;
  uint32_t padding;
};

struct write_out {
  uint32_t size;
  uint32_t padding;
};

struct fsync_in {
  uint64_t fh;
  uint32_t fsync_flags;
  uint32_t padding;
};

struct fallocate_in {
  uint64_t fh;
  uint64_t offset;
  uint64_t length;
  uint32_t mode;
  uint32_t padding;
};

// FUSE_IOCTL.  vramfs answers one command, restricted (its argument's size
// and direction are in the command's number, and the kernel copies it in).
struct ioctl_in {
  uint64_t fh;
  uint32_t flags;
  uint32_t cmd;
  uint64_t arg;
  uint32_t in_size;
  uint32_t out_size;
};

struct ioctl_out {
  int32_t result;
  uint32_t flags;
  uint32_t in_iovs;
  uint32_t out_iovs;
};

struct lseek_in {
  uint64_t fh;
  uint64_t offset;
  uint32_t whence;
  uint32_t padding;
};

struct lseek_out {
  uint64_t offset;
};

struct kstatfs {
  uint64_t blocks;
  uint64_t bfree;
  uint64_t bavail;
  uint64_t files;
  uint64_t ffree;
  uint32_t bsize;
  uint32_t namelen;
  uint32_t frsize;
  uint32_t padding;
  uint32_t spare[6];
};

struct statfs_out {
  struct kstatfs st;
};

struct interrupt_in {
  uint64_t unique;
};

struct dirent {
  uint64_t ino;
  uint64_t off;
  uint32_t namelen;
  uint32_t type;
  char name[];
};

// FUSE over io_uring (protocol 7.42, kernel 6.14).

// sqe->cmd_op
enum uring_cmd : uint32_t {
  uring_cmd_register = 1,
  uring_cmd_commit_and_fetch = 2,
};

// In the SQE128's 80-byte command area.
struct uring_cmd_req {
  uint64_t flags;
  uint64_t commit_id;
  uint16_t qid;
  uint8_t padding[6];
};

struct uring_ent_in_out {
  uint64_t flags;
  uint64_t commit_id;  // the request's unique, echoed by COMMIT_AND_FETCH
  uint32_t payload_sz;
  uint32_t padding;
  uint64_t reserved;
};

// The header buffer of one ring entry: the kernel writes in_header and the
// first argument of a request here, and reads out_header from in_out; every
// other argument, in either direction, travels in the payload buffer.
struct uring_req_header {
  char in_out[128];
  char op_in[128];
  uring_ent_in_out ring_ent_in_out;
};

static_assert(sizeof(in_header) == 40);
static_assert(sizeof(out_header) == 16);
static_assert(sizeof(init_in) == 64);
static_assert(sizeof(init_out) == 64);
static_assert(sizeof(attr) == 88);
static_assert(sizeof(entry_out) == 128);
static_assert(sizeof(getattr_in) == 16);
static_assert(sizeof(attr_out) == 104);
static_assert(sizeof(setattr_in) == 88);
static_assert(sizeof(open_in) == 8);
static_assert(sizeof(ioctl_in) == 32);
static_assert(sizeof(ioctl_out) == 16);
static_assert(sizeof(open_out) == 16);
static_assert(sizeof(release_in) == 24);
static_assert(sizeof(flush_in) == 24);
static_assert(sizeof(read_in) == 40);
static_assert(sizeof(write_in) == 40);
static_assert(sizeof(write_out) == 8);
static_assert(sizeof(fsync_in) == 16);
static_assert(sizeof(fallocate_in) == 32);
static_assert(sizeof(lseek_in) == 24);
static_assert(sizeof(lseek_out) == 8);
static_assert(sizeof(kstatfs) == 80);
static_assert(sizeof(dirent) == 24);
static_assert(sizeof(uring_cmd_req) == 24 && sizeof(uring_cmd_req) <= 80);
static_assert(sizeof(uring_ent_in_out) == 32);
static_assert(sizeof(uring_req_header) == 288);
static_assert(offsetof(uring_req_header, ring_ent_in_out) == 256);

}  // namespace vramfs::fuse
