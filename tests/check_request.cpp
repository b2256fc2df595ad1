// Unit tests: decoding FUSE requests and answering them (fuse/request.h,
// fuse/operations.h), over the host store.  Every malformed request must
// get an error, never a crash or a reply built from bytes that were not
// there.
#include "common/stats.h"
#include "fuse/operations.h"
#include "fuse/request.h"
#include "small_filesystem.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <vector>

// Last: check.h defines macros (fail) that clash with the C++ library.
#include "check_main.h"

using namespace vramfs;
using namespace vramfs::fuse;

namespace {

constexpr uint64_t block = small_filesystem::block;
constexpr uint64_t file_size = small_filesystem::file_size;

struct fixture : small_filesystem {
  using small_filesystem::small_filesystem;

  template <typename T>
  T body() const {
    T value;
    memcpy(&value, out.data(), sizeof value);
    return value;
  }
  answer init(uint32_t flags, uint32_t flags2 = 0) {
    init_in in{};
    in.major = 7;
    in.minor = 45;
    in.max_readahead = 131072;
    in.flags = flags;
    in.flags2 = flags2;
    return send(op_init, 0, &in, sizeof in);
  }
  answer lookup(const char *name, size_t len) { return send(op_lookup, root_ino, nullptr, 0, name, len); }
};

std::vector<std::byte> header_only(uint32_t len, uint32_t opcode, size_t actual) {
  std::vector<std::byte> bytes(actual);
  in_header h{};
  h.len = len;
  h.opcode = opcode;
  h.unique = 42;
  memcpy(bytes.data(), &h, std::min(sizeof h, actual));
  return bytes;
}

}  // namespace

START_TEST(truncated_and_inconsistent_requests_are_refused) {
  uint64_t unique = 7;
  std::string why;
  auto tiny = header_only(39, op_getattr, 39);
  ck_assert(!split_device_request(tiny, &unique, &why));
  ck_assert_uint_eq(unique, 0);  // nothing to answer
  auto wrong_len = header_only(100, op_getattr, 56);
  ck_assert(!split_device_request(wrong_len, &unique, &why));
  ck_assert_uint_eq(unique, 42);  // answerable with an error
  auto short_write = header_only(60, op_write, 60);  // write_in needs 40 bytes
  ck_assert(!split_device_request(short_write, &unique, &why));
  ck_assert(why.find("missing its argument") != std::string::npos);
}
END_TEST

START_TEST(old_short_init_is_zero_extended) {
  fixture f;
  uint32_t old_init[4] = {7, 26, 65536, uint32_t(init_async_dio)};  // a 7.26 kernel's 16 bytes
  answer a = f.send(op_init, 0, old_init, sizeof old_init);
  ck_assert_int_eq(a.error, 0);
  auto o = f.body<init_out>();
  ck_assert_uint_eq(o.major, 7);
  ck_assert_uint_eq(o.minor, 26);
  ck_assert_uint_eq(o.flags2, 0);  // flags2 was not there to read
}
END_TEST

START_TEST(init_reply_asks_for_what_swap_needs) {
  fixture f;
  answer a = f.init(uint32_t(init_async_dio | init_max_pages | init_big_writes |
                             init_writeback_cache | init_ext),
                    uint32_t(init_over_io_uring >> 32));
  ck_assert_int_eq(a.error, 0);
  ck_assert_uint_eq(a.length, sizeof(init_out));
  auto o = f.body<init_out>();
  ck_assert_uint_eq(o.max_write, max_request_bytes);
  ck_assert_uint_eq(o.max_pages, max_request_bytes / 4096);
  ck_assert(o.flags & init_async_dio);
  ck_assert(o.flags & init_max_pages);
  ck_assert(!(o.flags & init_writeback_cache));  // never a second copy in the kernel
  ck_assert_uint_eq(o.flags2, 0);                // io_uring was not wished for
  ck_assert_uint_ge(o.max_background, 128);      // loop's queue reaches the daemon
  ck_assert(!f.fs.state.terms.io_uring);
}
END_TEST

START_TEST(init_with_uring_wished_but_not_offered_is_refused) {
  fixture f(true);
  answer a = f.init(uint32_t(init_async_dio | init_ext));
  ck_assert_int_eq(a.error, -EPROTO);
  ck_assert(f.fs.init_refusal.find("enable_uring") != std::string::npos);
  fixture g(true);
  a = g.init(uint32_t(init_async_dio | init_ext | init_max_pages),
             uint32_t(init_over_io_uring >> 32));
  ck_assert_int_eq(a.error, 0);
  auto o = g.body<init_out>();
  ck_assert(o.flags & init_ext);
  ck_assert_uint_eq(o.flags2, uint32_t(init_over_io_uring >> 32));
  ck_assert(g.fs.state.terms.io_uring);
}
END_TEST

START_TEST(lookup_needs_a_terminated_name) {
  fixture f;
  ck_assert_int_eq(f.lookup("swapfile", 8).error, -EINVAL);  // no NUL
  ck_assert_int_eq(f.lookup("", 1).error, -EINVAL);
  ck_assert_int_eq(f.lookup("other", 6).error, -ENOENT);
  answer a = f.lookup("swapfile", 9);
  ck_assert_int_eq(a.error, 0);
  auto e = f.body<entry_out>();
  ck_assert_uint_eq(e.nodeid, data_ino);
  ck_assert_uint_eq(e.attr.size, file_size);
  ck_assert_uint_eq(e.attr.mode, S_IFREG | 0600);
  ck_assert_int_eq(f.send(op_lookup, data_ino, nullptr, 0, "x", 2).error, -ENOTDIR);
}
END_TEST

START_TEST(write_then_read_through_requests) {
  fixture f;
  std::vector<uint8_t> data(8192);
  for (size_t i = 0; i < data.size(); ++i) data[i] = uint8_t(i * 7 + 1);
  write_in w{};
  w.offset = 3 * block - 4096;  // across a block boundary
  w.size = uint32_t(data.size());
  answer a = f.send(op_write, data_ino, &w, sizeof w, data.data(), data.size());
  ck_assert_int_eq(a.error, 0);
  ck_assert_uint_eq(f.body<write_out>().size, data.size());
  // A WRITE that claims more data than it carries.
  w.size = 100000;
  ck_assert_int_eq(f.send(op_write, data_ino, &w, sizeof w, data.data(), data.size()).error,
                   -EINVAL);
  read_in r{};
  r.offset = 3 * block - 4096;
  r.size = uint32_t(data.size());
  a = f.send(op_read, data_ino, &r, sizeof r);
  ck_assert_int_eq(a.error, 0);
  ck_assert_uint_eq(a.length, data.size());
  ck_assert_int_eq(memcmp(f.out.data(), data.data(), data.size()), 0);
  r.offset = file_size;  // at the end: empty, not an error
  a = f.send(op_read, data_ino, &r, sizeof r);
  ck_assert_int_eq(a.error, 0);
  ck_assert_uint_eq(a.length, 0);
}
END_TEST

START_TEST(stats_reads_need_their_own_open) {
  fixture f;
  read_in r{};
  r.fh = 12345;  // never opened (or opened by a server that is gone)
  r.size = 4096;
  ck_assert_int_eq(f.send(op_read, stats_ino, &r, sizeof r).error, -EBADF);
  open_in o{};
  o.flags = O_RDONLY;
  answer a = f.send(op_open, stats_ino, &o, sizeof o);
  ck_assert_int_eq(a.error, 0);
  r.fh = f.body<open_out>().fh;
  a = f.send(op_read, stats_ino, &r, sizeof r);
  ck_assert_int_eq(a.error, 0);
  std::string text(reinterpret_cast<const char *>(f.out.data()), a.length);
  ck_assert(text.find("size_bytes 4194304\n") != std::string::npos);
  ck_assert(text.find("transport dev\n") != std::string::npos);
  o.flags = O_WRONLY;
  ck_assert_int_eq(f.send(op_open, stats_ino, &o, sizeof o).error, -EACCES);
}
END_TEST

START_TEST(the_namespace_and_the_file_mode_are_fixed) {
  fixture f;
  for (uint32_t op : {op_mknod, op_mkdir, op_symlink, op_link, op_unlink, op_rmdir, op_rename,
                      op_rename2, op_create, op_tmpfile})
    ck_assert_int_eq(f.send(op, root_ino, nullptr, 0, "name", 5).error, -EPERM);
  setattr_in s{};
  s.valid = fattr_mode;
  s.mode = 0644;
  ck_assert_int_eq(f.send(op_setattr, data_ino, &s, sizeof s).error, -EPERM);
  s.mode = 0600;  // what it is already: allowed
  ck_assert_int_eq(f.send(op_setattr, data_ino, &s, sizeof s).error, 0);
  s.valid = fattr_uid;
  s.uid = getuid() + 1;
  ck_assert_int_eq(f.send(op_setattr, data_ino, &s, sizeof s).error, -EPERM);
  s.valid = fattr_size;
  s.size = 1;  // the size changes in whole blocks (check_resize)
  ck_assert_int_eq(f.send(op_setattr, data_ino, &s, sizeof s).error, -EINVAL);
  ck_assert_int_eq(f.send(op_getxattr, data_ino, nullptr, 0).error, -ENOSYS);
  ck_assert(!f.send(op_forget, data_ino, nullptr, 0).reply);
  ck_assert_int_eq(f.send(9999, data_ino, nullptr, 0).error, -ENOSYS);
}
END_TEST

START_TEST(statfs_has_no_inode_counts) {
  fixture f;
  answer a = f.send(op_statfs, root_ino, nullptr, 0);
  ck_assert_int_eq(a.error, 0);
  auto s = f.body<statfs_out>();
  ck_assert_uint_eq(s.st.files, 0);  // df -i shows "-", not 100% used
  ck_assert_uint_eq(s.st.blocks, file_size / block);
  ck_assert_uint_eq(s.st.bfree, file_size / block);
}
END_TEST

START_TEST(lseek_finds_data_and_holes) {
  fixture f;
  std::vector<uint8_t> data(block, 1);
  write_in w{};
  w.offset = 2 * block;
  w.size = uint32_t(block);
  ck_assert_int_eq(f.send(op_write, data_ino, &w, sizeof w, data.data(), data.size()).error, 0);
  lseek_in l{};
  l.whence = SEEK_DATA;
  l.offset = 100;
  ck_assert_int_eq(f.send(op_lseek, data_ino, &l, sizeof l).error, 0);
  ck_assert_uint_eq(f.body<lseek_out>().offset, 2 * block);
  l.whence = SEEK_HOLE;
  l.offset = 2 * block + 5;
  ck_assert_int_eq(f.send(op_lseek, data_ino, &l, sizeof l).error, 0);
  ck_assert_uint_eq(f.body<lseek_out>().offset, 3 * block);
  l.whence = SEEK_DATA;
  l.offset = 3 * block;
  ck_assert_int_eq(f.send(op_lseek, data_ino, &l, sizeof l).error, -ENXIO);
  l.offset = file_size;
  ck_assert_int_eq(f.send(op_lseek, data_ino, &l, sizeof l).error, -ENXIO);
}
END_TEST

START_TEST(fallocate_keeps_its_memory_when_a_neighbour_is_discarded) {
  // Lazy mode: fallocate backs a chunk; a discard of another block in the
  // same chunk must not give that memory back (a later write would fail
  // with ENOSPC where fallocate had promised room).
  fixture f;
  fallocate_in a{};
  a.offset = 0;
  a.length = block;
  ck_assert_int_eq(f.send(op_fallocate, data_ino, &a, sizeof a).error, 0);
  ck_assert_uint_eq(f.store.held_bytes(), host_store::chunk_bytes);
  a.offset = block;
  a.mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
  ck_assert_int_eq(f.send(op_fallocate, data_ino, &a, sizeof a).error, 0);
  ck_assert_uint_eq(f.store.held_bytes(), host_store::chunk_bytes);
  // Punching the preallocated block itself gives the chunk back.
  a.offset = 0;
  ck_assert_int_eq(f.send(op_fallocate, data_ino, &a, sizeof a).error, 0);
  ck_assert_uint_eq(f.store.held_bytes(), 0);
}
END_TEST

START_TEST(ring_payload_may_not_overflow_its_buffer) {
  uring_req_header h{};
  in_header in{};
  in.opcode = op_write;
  in.unique = 9;
  memcpy(h.in_out, &in, sizeof in);
  h.ring_ent_in_out.payload_sz = 5000;
  std::vector<std::byte> payload(4096);
  uint64_t unique;
  std::string why;
  ck_assert(!split_ring_request(h, payload, &unique, &why));
  ck_assert_uint_eq(unique, 9);
  h.ring_ent_in_out.payload_sz = 4096;
  auto req = split_ring_request(h, payload, &unique, &why);
  ck_assert(req.has_value());
  ck_assert_uint_eq(req->argument.size(), sizeof(write_in));
  ck_assert_uint_eq(req->payload.size(), 4096);
}
END_TEST

Suite *make_suite() {
  Suite *s = suite_create("request");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, truncated_and_inconsistent_requests_are_refused);
  tcase_add_test(tc, old_short_init_is_zero_extended);
  tcase_add_test(tc, init_reply_asks_for_what_swap_needs);
  tcase_add_test(tc, init_with_uring_wished_but_not_offered_is_refused);
  tcase_add_test(tc, lookup_needs_a_terminated_name);
  tcase_add_test(tc, write_then_read_through_requests);
  tcase_add_test(tc, stats_reads_need_their_own_open);
  tcase_add_test(tc, the_namespace_and_the_file_mode_are_fixed);
  tcase_add_test(tc, statfs_has_no_inode_counts);
  tcase_add_test(tc, lseek_finds_data_and_holes);
  tcase_add_test(tc, fallocate_keeps_its_memory_when_a_neighbour_is_discarded);
  tcase_add_test(tc, ring_payload_may_not_overflow_its_buffer);
  suite_add_tcase(s, tc);
  return s;
}
