// The control channel between the keeper and its server (-o failover): a
// SOCK_SEQPACKET socket pair, one message a packet, file descriptors passed
// with SCM_RIGHTS.  The server sends the keeper every descriptor that must
// outlive it (the /dev/fuse connection, the state memfd, each chunk of
// memory) before it relies on it, and says when it serves.  Each
// server has its own channel; the keeper forwards to a standby server the
// VRAM chunks the serving one takes and gives back, and says when to go.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace vramfs::failover {

enum class message_kind : uint32_t {
  fuse_device = 1,    // fd: the mount's /dev/fuse
  state_region = 2,   // fd: the memfd of state_region
  // 3 was host_data (one memfd for all of the host store's data).
  vram_chunk = 4,     // fd: memory chunk `index`: VRAM (a CUDA shareable
                      // handle, value 0) or RAM (a memfd of value bytes)
  vram_released = 5,  // chunk `index` was given back: close its fd
  ready = 6,          // the server serves; text: its warnings, one a line
  failure = 7,        // the server cannot start; text: why
  standby_ready = 8,  // a standby server waits, ready to take over
  go = 9,             // to a standby: the serving server died; take over
};

struct message {
  message_kind kind{};
  uint64_t index = 0;
  uint64_t value = 0;
  std::string text;
  int fd = -1;  // received descriptor, owned by the receiver; -1 if none
};

// Both ends of a new channel (close-on-exec), or nullopt with errno set.
std::optional<std::pair<int, int>> make_channel();

// Sends one message; fd (if >= 0) is passed, and stays open here.  Retries
// on EINTR; returns 0 or a negative errno.
int send_message(int socket, message_kind kind, uint64_t index = 0, uint64_t value = 0,
                 const std::string &text = "", int fd = -1);

// Receives one message.  nullopt at end of file (the peer is gone) or on an
// error (errno tells); with nonblocking, also when nothing is waiting
// (errno EAGAIN).
std::optional<message> receive_message(int socket, bool nonblocking);

}  // namespace vramfs::failover
