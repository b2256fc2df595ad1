#include "failover/failed_mode.h"

#include "common/log.h"

#include <dirent.h>
#include <sys/swap.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace vramfs::failover {
namespace {

std::string read_line(const std::string &path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// The loop devices (/dev/loopN) attached to data_path.
std::vector<std::string> loops_of(const std::string &data_path) {
  std::vector<std::string> loops;
  DIR *d = opendir("/sys/block");
  if (!d) return loops;
  while (dirent *e = readdir(d)) {
    std::string name = e->d_name;
    if (name.rfind("loop", 0) != 0) continue;
    std::string file = read_line("/sys/block/" + name + "/loop/backing_file");
    const std::string deleted = " (deleted)";
    if (file.size() > deleted.size() && file.ends_with(deleted)) file.resize(file.size() - deleted.size());
    if (file == data_path) loops.push_back("/dev/" + name);
  }
  closedir(d);
  return loops;
}

bool is_swap(const std::string &device) {
  std::ifstream swaps("/proc/swaps");
  std::string line;
  while (std::getline(swaps, line))
    if (line.rfind(device + " ", 0) == 0 || line.rfind(device + "\t", 0) == 0) return true;
  return false;
}

// "1234 (name) 56 MiB, ..." for processes with pages in swap: which swap
// device holds them is not told by the kernel, so every swapping process
// is named.
std::string swapping_processes() {
  std::vector<std::pair<long, std::string>> found;
  DIR *d = opendir("/proc");
  if (!d) return "";
  while (dirent *e = readdir(d)) {
    if (!isdigit(static_cast<unsigned char>(e->d_name[0]))) continue;
    std::ifstream status(std::string("/proc/") + e->d_name + "/status");
    std::string line, name;
    long kib = 0;
    while (std::getline(status, line)) {
      if (line.rfind("Name:", 0) == 0) name = line.substr(line.find_first_not_of(" \t", 5));
      if (line.rfind("VmSwap:", 0) == 0) kib = strtol(line.c_str() + 7, nullptr, 10);
    }
    if (kib > 0) found.emplace_back(kib, std::string(e->d_name) + " (" + name + ")");
  }
  closedir(d);
  std::sort(found.rbegin(), found.rend());
  std::string text;
  for (size_t i = 0; i < found.size() && i < 20; ++i)
    text += (i ? ", " : "") + found[i].second + " " + std::to_string(found[i].first / 1024) + " MiB";
  if (found.size() > 20) text += ", and " + std::to_string(found.size() - 20) + " more";
  return text;
}

}  // namespace

void take_failed_swap_off(const std::string &data_path) {
  std::string at_risk = swapping_processes();
  log_err("no vramfs server can serve %s: the pages in its swap are lost; processes with "
          "swapped pages get SIGBUS when they touch a lost one: %s",
          data_path.c_str(), at_risk.empty() ? "none has pages in swap" : at_risk.c_str());
  std::vector<std::string> devices;
  for (const std::string &loop : loops_of(data_path))
    if (is_swap(loop)) devices.push_back(loop);
  if (devices.empty()) return;
  std::thread([devices, data_path] {
    for (const std::string &dev : devices) {
      log_err("taking %s (swap on %s) off, so that no new page goes there", dev.c_str(),
              data_path.c_str());
      if (swapoff(dev.c_str()) != 0)
        log_err("swapoff %s failed: %s; run 'vramswap stop'", dev.c_str(), strerror(errno));
      else
        log_err("%s is off; detach it with 'vramswap stop'", dev.c_str());
    }
  }).detach();
}

}  // namespace vramfs::failover
