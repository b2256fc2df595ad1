// The keeper (-o failover): a small process that holds everything that must
// outlive a server, and replaces a server that dies.
//
// It keeps the /dev/fuse connection (so the kernel never aborts it), the
// state region (mapped, so that it stays resident and locked), and one
// descriptor per chunk of the store's memory: VRAM (the descriptor keeps
// the GPU memory and its contents alive with no CUDA context here) or RAM
// (a memfd, mapped here too).  It follows the chunks the server takes and
// gives back, so that it holds exactly those in use.  The server
// is forked from it and sends it each of these before relying on it
// (failover/control.h).  When the server dies, by any signal or exit, while
// the connection lives, the keeper forks a new one, which inherits them all,
// takes the state over and asks the kernel to resend what the dead one had
// read but not answered (docs/design.md, "Failover").
//
// The keeper is single-threaded (a poll loop over a signalfd and the
// control socket), so forking it is safe; it does no I/O on the mount, and
// it follows the daemon's rules: memory locked, IO_FLUSHER, OOM score
// -1000.  It answers SIGTERM, SIGINT and SIGHUP as the daemon does: it
// refuses while the data file is open, and unmounts otherwise.
#pragma once

namespace vramfs {

struct options;
class startup_report;

// Runs the keeper in the daemon process until the mount ends; returns the
// exit status.  report tells the user's vramfs command how the start went.
int run_keeper(const options &opts, startup_report &report);

}  // namespace vramfs
