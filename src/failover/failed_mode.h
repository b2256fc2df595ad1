// What a mount does once no server can be started on its memory (the GPU is
// gone, a server dies at every start): the least harmful course.  Its swap
// is taken off, so that no new page goes where it cannot be read back; the
// pages already there are lost, and the log names the processes that had
// swapped pages, which get SIGBUS when they touch a lost one.
#pragma once

#include <string>

namespace vramfs::failover {

// Finds the loop devices whose backing file is data_path and that are
// active swap, and swaps them off in a thread of their own (every read then
// fails at once, so it ends soon).  Logs what it did and who is at risk.
void take_failed_swap_off(const std::string &data_path);

}  // namespace vramfs::failover
