#include "format/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "dpn/dpn.h"

namespace dpn::format {

namespace {
[[noreturn]] void fail(const std::string& path, const char* what, int err) {
  throw IoError(path, err, std::string("cannot ") + what + " model file '" + path + "': " +
                               std::strerror(err));
}
}  // namespace

MappedFile::MappedFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, "open", errno);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    fail(path, "stat", err);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, "read", S_ISDIR(st.st_mode) ? EISDIR : EINVAL);
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    // MAP_PRIVATE + PROT_READ: the engine never writes; the mapping outlives the descriptor.
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      fail(path, "map", err);
    }
    data_ = static_cast<const uint8_t*>(p);
    mapped_ = true;
  }
  ::close(fd);
}

MappedFile::~MappedFile() {
  if (mapped_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

}  // namespace dpn::format
