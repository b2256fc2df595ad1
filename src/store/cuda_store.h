// The cuda store: the file's data in GPU memory.
#pragma once

#include "store/block_store.h"
#include "store/copy_engine_abi.h"

#include <memory>
#include <string>

namespace vramfs {

struct options;
struct store_keeping;

// Opens the GPU that opts.device names and takes its memory: all of the
// size at once, or (opts.lazy) chunk by chunk as blocks are first written;
// with keeping (-o failover) in shareable chunks the keeper holds, or those
// it holds already.  On failure returns nullptr with a message for the user
// in *error.  launch: how the copy engine's kernel starts (nullptr: the
// real launch); a test hands one that fails, to see a GPU where the engine
// cannot run.
std::unique_ptr<block_store> create_cuda_store(const options &opts, std::string *error,
                                               const store_keeping *keeping,
                                               engine_abi::launcher launch = nullptr);

// A GPU's UUID as nvidia-smi -L prints it: "GPU-" and 32 hex digits in the
// 8-4-4-4-12 grouping; device= accepts it with or without the prefix.
std::string gpu_uuid_text(const unsigned char bytes[16]);

}  // namespace vramfs
