// A host store inside the fault-injecting decorator, as the daemon builds
// it when VRAMFS_INJECT_FAULT names a store fault: for the suites that test
// what the store and the cache do when a copy fails.
#pragma once

#include "store/faulty_store.h"
#include "store/host_store.h"

#include <memory>

namespace vramfs {

struct faulty_host_store : faulty_store {
  faulty_host_store(uint64_t size, bool lazy, uint64_t max_size = 0)
      : faulty_store(std::make_unique<host_store>(size, lazy, max_size)) {}
};

}  // namespace vramfs
