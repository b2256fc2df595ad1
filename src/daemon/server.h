// The server: the process that opens the GPU, holds the store, the cache
// and the transport, and answers the kernel.  Without -o failover it is
// the daemon itself; with it, the keeper (failover/keeper.h) starts it, and
// starts a new one when it dies.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <utility>
#include <vector>

namespace vramfs {

struct options;
class startup_report;

namespace failover {
class state_region;
}

// What a server of -o failover gets from its keeper.  It is forked from the
// keeper, so the descriptors and mappings below are the keeper's own.
struct keeper_context {
  int control = -1;         // the socket to the keeper (failover/control.h)
  pid_t keeper_pid = 0;
  // A takeover: the connection, the state and the memory exist already.
  bool takeover = false;
  // A standby: a takeover prepared ahead, which waits for the keeper's
  // word (the serving server's death) before it touches the state.
  bool standby = false;
  uint64_t takeover_number = 0;  // 1 for the first server after the first
  int fuse_fd = -1;
  failover::state_region *region = nullptr;
  // The memory the keeper holds: VRAM handles or RAM memfds.
  std::vector<std::pair<uint64_t, int>> chunks;  // index, descriptor
  // No server could be started: answer every data request with EIO, take
  // the swap off, and say which processes lost pages (failed mode).
  bool failed_mode = false;
};

// Serves the mount until its connection ends; returns the exit status.
// Every failure before the mount is usable goes to report.failure().
// keeper is nullptr without -o failover: the server then mounts, owns the
// connection and handles the stop signals itself.
int run_server(const options &opts, startup_report &report, keeper_context *keeper);

}  // namespace vramfs
