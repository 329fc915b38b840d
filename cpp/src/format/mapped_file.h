// A model file's bytes: memory-mapped read-only (read in place), or read into memory the object
// owns (LoadMode::Copy, for deploys that rewrite the file in place). The Model keeps it alive so
// tensors are read in place.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace dpn::format {

class MappedFile {
 public:
  // Throws IoError when the file cannot be opened, stat'ed, mapped or read, and for anything but a
  // regular file (refused before any read, so a FIFO or a device never blocks the caller).
  explicit MappedFile(const std::string& path, bool copy = false);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false;  // else data_ (if any) is an aligned heap buffer
};

}  // namespace dpn::format
