#include "failover/control.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace vramfs::failover {
namespace {

// What travels in one packet.
struct wire {
  uint32_t kind;
  uint32_t text_len;
  uint64_t index;
  uint64_t value;
  char text[480];
};

}  // namespace

std::optional<std::pair<int, int>> make_channel() {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) return std::nullopt;
  return std::make_pair(fds[0], fds[1]);
}

int send_message(int socket, message_kind kind, uint64_t index, uint64_t value,
                 const std::string &text, int fd) {
  wire w{};
  w.kind = uint32_t(kind);
  w.index = index;
  w.value = value;
  w.text_len = uint32_t(std::min(text.size(), sizeof w.text));
  memcpy(w.text, text.data(), w.text_len);
  iovec iov{&w, sizeof w};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  ssize_t n;
  do {
    n = sendmsg(socket, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  return n == ssize_t(sizeof w) ? 0 : n < 0 ? -errno : -EIO;
}

std::optional<message> receive_message(int socket, bool nonblocking) {
  wire w{};
  iovec iov{&w, sizeof w};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = recvmsg(socket, &msg, MSG_CMSG_CLOEXEC | (nonblocking ? MSG_DONTWAIT : 0));
  } while (n < 0 && errno == EINTR);
  if (n <= 0) {
    if (n == 0) errno = 0;
    return std::nullopt;
  }
  message m;
  for (cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
      memcpy(&m.fd, CMSG_DATA(c), sizeof m.fd);
  if (n != ssize_t(sizeof w)) {
    if (m.fd >= 0) close(m.fd);
    errno = EPROTO;
    return std::nullopt;
  }
  m.kind = message_kind(w.kind);
  m.index = w.index;
  m.value = w.value;
  m.text.assign(w.text, std::min<size_t>(w.text_len, sizeof w.text));
  return m;
}

}  // namespace vramfs::failover
