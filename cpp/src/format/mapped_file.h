// Read-only memory map of a model file; the Model keeps it alive so tensors are read in place.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace dpn::format {

class MappedFile {
 public:
  // Throws IoError when the file cannot be opened, stat'ed or mapped.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false;
};

}  // namespace dpn::format
