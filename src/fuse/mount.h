// Mounting with libfuse, and nothing else from it: fuse_session_mount does
// mount(2) as root and runs fusermount3 for other users, and parses FUSE's
// own mount options (allow_other, ...).  The protocol on the descriptor it
// returns is spoken by this project (fuse/transport.h): Debian 12's libfuse
// (3.14) can neither negotiate FUSE over io_uring nor take a connection
// over after a restart.
#pragma once

#include <memory>
#include <optional>
#include <string>

struct fuse_session;

namespace vramfs {

struct options;

namespace fuse {

class mount {
 public:
  // Whether libfuse accepts the user's FUSE options; one line if not.
  // Checked before forking, so that a typo is answered on the terminal.
  static std::optional<std::string> check_options(const options &opts);
  // Mounts opts.mountpoint; nullptr with a message in *error on failure.
  static std::unique_ptr<mount> create(const options &opts, std::string *error);
  // Releases the descriptor, leaving the mount alone: this ends with the
  // kernel's connection, after an unmount or an abort.
  ~mount();
  mount(const mount &) = delete;
  mount &operator=(const mount &) = delete;

  int fd() const;
  const std::string &mountpoint() const { return mountpoint_; }

  // Unmounts after a start that failed or was abandoned, before the mount
  // was announced.  Fails (EBUSY) if something already opened the file.
  std::optional<std::string> abandon();

 private:
  mount(fuse_session *se, std::string mountpoint) : session_(se), mountpoint_(std::move(mountpoint)) {}
  fuse_session *session_;
  std::string mountpoint_;
};

// Unmounts without detaching lazily: fails with EBUSY while the file is
// open, so a stop can never strand a loop device.
std::optional<std::string> unmount(const std::string &mountpoint);

}  // namespace fuse
}  // namespace vramfs
