// A store that passes every call to another store inside it.  Decorators
// derive from it and override only what they change: the fault-injecting
// store (faulty_store.h), and the tests' watching and late stores.
#pragma once

#include "store/block_store.h"

#include <memory>
#include <utility>

namespace vramfs {

class store_decorator : public block_store {
 public:
  explicit store_decorator(std::unique_ptr<block_store> inner)
      : block_store(inner->size(), inner->lazy(), inner->max_size()), inner_(std::move(inner)) {
    block_store::set_copy_timeout(inner_->copy_timeout());
  }

  block_store &inner() { return *inner_; }

  const char *backend() const override { return inner_->backend(); }
  std::string device() const override { return inner_->device(); }
  void set_size(uint64_t bytes) override {
    block_store::set_size(bytes);
    inner_->set_size(bytes);
  }
  void set_copy_timeout(std::chrono::milliseconds t) override {
    block_store::set_copy_timeout(t);
    inner_->set_copy_timeout(t);
  }
  uint64_t chunk_size() const override { return inner_->chunk_size(); }
  uint64_t held_bytes() const override { return inner_->held_bytes(); }
  bool failed() const override { return inner_->failed(); }
  std::string copy_path() const override { return inner_->copy_path(); }
  copy_counts copies() const override { return inner_->copies(); }
  std::unique_ptr<store_channel> open_channel() override { return inner_->open_channel(); }
  std::unique_ptr<store_channel> open_background_channel() override {
    return inner_->open_background_channel();
  }
  int submit_read(store_channel &ch, uint64_t offset, void *dst, size_t len) override {
    return inner_->submit_read(ch, offset, dst, len);
  }
  int submit_write(store_channel &ch, uint64_t offset, const void *src, size_t len) override {
    return inner_->submit_write(ch, offset, src, len);
  }
  int wait(store_channel &ch) override { return inner_->wait(ch); }
  int ensure_backed(uint64_t offset, uint64_t len) override {
    return inner_->ensure_backed(offset, len);
  }
  void release(uint64_t offset, uint64_t len) override { inner_->release(offset, len); }
  int adopt_chunk(uint64_t index, int fd) override { return inner_->adopt_chunk(index, fd); }
  void forget_chunk(uint64_t index) override { inner_->forget_chunk(index); }
  bool single_process() const override { return inner_->single_process(); }
  void *alloc_host(size_t bytes) override { return inner_->alloc_host(bytes); }
  void free_host(void *ptr, size_t bytes) override { inner_->free_host(ptr, bytes); }
  int pin_host(void *ptr, size_t bytes) override { return inner_->pin_host(ptr, bytes); }
  void unpin_host(void *ptr) override { inner_->unpin_host(ptr); }

 protected:
  std::unique_ptr<block_store> inner_;
};

}  // namespace vramfs
