// The cuda store: the file's data in GPU memory.
#pragma once

#include "block_store.h"

#include <memory>
#include <string>

namespace vramfs {

struct options;

// Opens the GPU that opts.device names and takes its memory: all of the
// size at once, or (opts.lazy) chunk by chunk as blocks are first written.
// On failure returns nullptr with a message for the user in *error.
std::unique_ptr<block_store> create_cuda_store(const options &opts, std::string *error);

}  // namespace vramfs
