// Unit tests: sizes and the command line.
#include "common/options.h"

#include <string>
#include <vector>

// Last: check.h defines macros (fail) that clash with the C++ library.
#include "check_main.h"

using namespace vramfs;

namespace {

std::optional<std::string> parse(std::vector<const char *> args, options *o) {
  args.insert(args.begin(), "vramfs");
  return parse_command_line(int(args.size()), args.data(), o);
}

uint64_t size_of(const char *text) {
  size_spec s;
  auto err = parse_size(text, true, &s);
  ck_assert_msg(!err, "%s: %s", text, err ? err->c_str() : "");
  return s.bytes;
}

void assert_size_rejected(const char *text, const char *why) {
  size_spec s;
  auto err = parse_size(text, true, &s);
  ck_assert_msg(err, "%s was accepted", text);
  ck_assert_msg(err->find(why) != std::string::npos, "%s: '%s' does not say '%s'", text,
                err->c_str(), why);
}

}  // namespace

START_TEST(sizes_with_units) {
  ck_assert_uint_eq(size_of("4G"), 4ull << 30);
  ck_assert_uint_eq(size_of("512M"), 512ull << 20);
  ck_assert_uint_eq(size_of("1T"), 1ull << 40);
  ck_assert_uint_eq(size_of("64k"), 64ull << 10);
  ck_assert_uint_eq(size_of("4096"), 4096);
  ck_assert_uint_eq(size_of("2GiB"), 2ull << 30);
  ck_assert_uint_eq(size_of("2GB"), 2ull << 30);
}
END_TEST

START_TEST(sizes_as_percent) {
  size_spec s;
  ck_assert(!parse_size("50%", true, &s));
  ck_assert(s.is_percent());
  ck_assert_uint_eq(s.percent, 50);
  ck_assert_uint_eq(s.resolve(8ull << 30), 4ull << 30);
  ck_assert(parse_size("50%", false, &s));  // where a share means nothing
}
END_TEST

START_TEST(bad_sizes) {
  assert_size_rejected("0", "greater than 0");
  assert_size_rejected("0G", "greater than 0");
  assert_size_rejected("-1", "negative");
  assert_size_rejected("4X", "unknown unit");
  assert_size_rejected("4GX", "unknown unit");
  assert_size_rejected("", "empty");
  assert_size_rejected("G", "not a number");
  assert_size_rejected("99999999999999999999", "too large");
  assert_size_rejected("99999999999T", "too large");
  assert_size_rejected("17179869184G", "too large");  // 2^34 G overflows 64 bits
  assert_size_rejected("0%", "1% to 100%");
  assert_size_rejected("101%", "1% to 100%");
}
END_TEST

START_TEST(format_sizes) {
  ck_assert(format_size(4ull << 30) == "4G");
  ck_assert(format_size(1536ull << 20) == "1536M");
  ck_assert(format_size(4097) == "4097");
}
END_TEST

START_TEST(command_line_defaults) {
  options o;
  ck_assert(!parse({"/mnt/vram", "-o", "size=4G"}, &o));
  ck_assert_str_eq(o.mountpoint.c_str(), "/mnt/vram");
  ck_assert_uint_eq(o.size->bytes, 4ull << 30);
  ck_assert_uint_eq(o.block, 64 * KiB);
  ck_assert_uint_eq(o.cache, 64 * MiB);
  ck_assert_str_eq(o.name.c_str(), "swapfile");
  ck_assert(!o.lazy);
  ck_assert(!o.foreground);
  ck_assert_uint_eq(o.threads, 8);
  ck_assert(o.fuse_args.empty());
}
END_TEST

START_TEST(command_line_all_options) {
  options o;
  ck_assert(!parse({"vramfs", "/mnt/vram", "-f", "-o",
                    "size=1G,backend=host,device=1,cache=16M,block=256K,name=swap0,lazy,"
                    "threads=4,reserve=1G,allow_other,transport=uring,queue_depth=4,"
                    "queue_threads=2,copy_timeout=5,failover",
                    "-odefaults"},
                   &o));
  ck_assert_str_eq(o.source.c_str(), "vramfs");  // as mount.fuse3 passes it
  ck_assert(o.backend == backend_kind::host);
  ck_assert_str_eq(o.device.c_str(), "1");
  ck_assert_uint_eq(o.cache, 16 * MiB);
  ck_assert_uint_eq(o.block, 256 * KiB);
  ck_assert_str_eq(o.name.c_str(), "swap0");
  ck_assert(o.lazy);
  ck_assert(o.foreground);
  ck_assert_uint_eq(o.threads, 4);
  ck_assert_uint_eq(o.reserve.bytes, 1 * GiB);
  ck_assert(o.transport == transport_kind::uring);
  ck_assert_uint_eq(o.queue_depth, 4);
  ck_assert_uint_eq(o.queue_threads, 2);
  ck_assert_uint_eq(o.copy_timeout, 5);
  ck_assert(o.failover);
  // FUSE's own options go to libfuse; mount(8)'s "defaults" is dropped.
  ck_assert_uint_eq(o.fuse_args.size(), 2);
  ck_assert_str_eq(o.fuse_args[1].c_str(), "allow_other");
}
END_TEST

START_TEST(command_line_errors) {
  struct {
    std::vector<const char *> args;
    const char *says;
  } cases[] = {
      {{}, "no mountpoint"},
      {{"-o", "size=4G"}, "no mountpoint"},
      {{"a", "b", "c"}, "too many arguments"},
      {{""}, "empty string"},
      {{"/mnt", "--bogus"}, "unknown option '--bogus'"},
      {{"/mnt", "-o"}, "needs a list"},
      {{"/mnt", "-o", "size="}, "needs a value"},
      {{"/mnt", "-o", "size=0"}, "greater than 0"},
      {{"/mnt", "-o", "size=-1"}, "negative"},
      {{"/mnt", "-o", "size=4X"}, "unknown unit"},
      {{"/mnt", "-o", "size=1000"}, "multiple of 4K"},
      {{"/mnt", "-o", "backend=opencl"}, "cuda or host"},
      {{"/mnt", "-o", "block=3000"}, "power of two"},
      {{"/mnt", "-o", "block=2K"}, "between 4K and 16M"},
      {{"/mnt", "-o", "block=32M"}, "between 4K and 16M"},
      {{"/mnt", "-o", "cache=100M"}, "power of two"},
      {{"/mnt", "-o", "cache=128T"}, "between"},
      {{"/mnt", "-o", "block=16M,cache=64M"}, "at least 8 blocks"},
      {{"/mnt", "-o", "threads=0"}, "from 1 to"},
      {{"/mnt", "-o", "name=a/b"}, "plain file name"},
      {{"/mnt", "-o", "name=.stats"}, "plain file name"},
      {{"/mnt", "-o", "lazy=1"}, "takes no value"},
      {{"/mnt", "-s"}, "not supported"},
  };
  for (auto &c : cases) {
    options o;
    auto err = parse(c.args, &o);
    ck_assert_msg(err, "accepted a command line that should say '%s'", c.says);
    ck_assert_msg(err->find(c.says) != std::string::npos, "'%s' does not say '%s'",
                  err->c_str(), c.says);
  }
}
END_TEST

START_TEST(large_block_raises_default_cache) {
  options o;
  ck_assert(!parse({"/mnt", "-o", "block=16M"}, &o));
  ck_assert_uint_eq(o.cache, 128 * MiB);
}
END_TEST

START_TEST(options_of_the_other_transport_are_warned_about) {
  // Each transport ignores the other's options: said, not silently dropped.
  auto warnings_for = [](const char *opts) {
    options o;
    auto err = parse({"/mnt", "-o", opts}, &o);
    ck_assert_msg(!err, "%s: %s", opts, err ? err->c_str() : "");
    return option_warnings(o);
  };
  auto says = [](const std::vector<std::string> &w, const char *text) {
    for (const auto &line : w)
      if (line.find(text) != std::string::npos) return true;
    return false;
  };
  ck_assert(says(warnings_for("size=1G,queue_depth=4"), "are ignored with transport=dev"));
  ck_assert(says(warnings_for("size=1G,queue_threads=2"), "are ignored with transport=dev"));
  ck_assert(says(warnings_for("size=1G,transport=uring,threads=4"),
                 "threads= is ignored with transport=uring"));
  ck_assert(says(warnings_for("size=1G,transport=uring,busy_poll=50"),
                 "busy_poll= is ignored with transport=uring"));
  ck_assert(warnings_for("size=1G,transport=uring,queue_depth=4,queue_threads=2").empty());
  ck_assert(warnings_for("size=1G,busy_poll=50").empty());
  ck_assert(warnings_for("size=1G,threads=4").empty());
}
END_TEST

START_TEST(help_and_version) {
  options o;
  ck_assert(!parse({"--help"}, &o));
  ck_assert(o.show_help);
  ck_assert(!parse({"-V"}, &o));
  ck_assert(o.show_version);
  std::string help = usage_text("vramfs");
  for (const char *opt : {"size=", "reserve=", "backend=", "device=", "cache=", "block=",
                          "threads=", "name=", "lazy", "-f", "-d"})
    ck_assert_msg(help.find(opt) != std::string::npos, "--help does not list %s", opt);
}
END_TEST

Suite *make_suite() {
  Suite *s = suite_create("options");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, sizes_with_units);
  tcase_add_test(tc, sizes_as_percent);
  tcase_add_test(tc, bad_sizes);
  tcase_add_test(tc, format_sizes);
  tcase_add_test(tc, command_line_defaults);
  tcase_add_test(tc, command_line_all_options);
  tcase_add_test(tc, command_line_errors);
  tcase_add_test(tc, large_block_raises_default_cache);
  tcase_add_test(tc, options_of_the_other_transport_are_warned_about);
  tcase_add_test(tc, help_and_version);
  suite_add_tcase(s, tc);
  return s;
}
