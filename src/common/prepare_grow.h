// Growing the data file without holding the swap back.
//
// The kernel runs a truncate, and a fallocate too, under the file's inode
// lock, and every write to the file waits for that lock: a grow that took
// its memory inside the truncate held each swap-out to the file back for
// as long as the allocation ran (about 25 ms per 64 MiB of RAM here), and
// a memory-limited process could be OOM-killed meanwhile.  An ioctl runs
// without that lock, so the memory of a grow is taken first, through this
// ioctl on the data file; the truncate that follows finds it held and
// only moves the end (page_cache::reserve_for_grow).
#pragma once

#include <linux/ioctl.h>

#include <cstdint>
#include <string>

namespace vramfs {

// Its argument: the size the file will grow to, in bytes.
constexpr uint32_t prepare_grow_ioctl = _IOW('V', 0x47, uint64_t);

// vramfs --prepare-grow SIZE FILE: sends the ioctl.  0, or -errno with
// *error saying what failed.
int prepare_grow(const std::string &file, uint64_t size, std::string *error);

}  // namespace vramfs
