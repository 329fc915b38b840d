#include "format/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>

#include "dpn/dpn.h"

namespace dpn::format {

namespace {
[[noreturn]] void fail(const std::string& path, const char* what, int err,
                       const char* reason = nullptr) {
  throw IoError(path, err,
                std::string("cannot ") + what + " model file '" + path +
                    "': " + (reason ? reason : std::strerror(err)));
}

const char* kind_of(mode_t m) {
  if (S_ISDIR(m)) return "a directory, not a regular file";
  if (S_ISFIFO(m)) return "a FIFO, not a regular file";
  if (S_ISSOCK(m)) return "a socket, not a regular file";
  if (S_ISCHR(m) || S_ISBLK(m)) return "a device, not a regular file";
  return "not a regular file";
}

struct Fd {
  int fd;
  ~Fd() { ::close(fd); }
};
}  // namespace

MappedFile::MappedFile(const std::string& path, bool copy) {
  // c_str() would silently cut the path at a NUL (Python's open() refuses such a path too).
  if (path.find('\0') != std::string::npos)
    fail(path.substr(0, path.find('\0')), "open", EINVAL, "the path holds a NUL byte");
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever; the type is
  // checked on the open descriptor (no race with a rename), before anything is read.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) fail(path, "open", errno);
  Fd guard{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0) fail(path, "stat", errno);
  if (!S_ISREG(st.st_mode))
    fail(path, "read", S_ISDIR(st.st_mode) ? EISDIR : EINVAL, kind_of(st.st_mode));
  size_ = static_cast<size_t>(st.st_size);
  if (size_ == 0) return;
  if (!copy) {
    // MAP_PRIVATE + PROT_READ: the engine never writes; the mapping outlives the descriptor.
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) fail(path, "map", errno);
    data_ = static_cast<const uint8_t*>(p);
    mapped_ = true;
    return;
  }
  // 64-byte aligned like a mapping, so tensors are read in place.
  auto* buf = static_cast<uint8_t*>(std::aligned_alloc(64, (size_ + 63) / 64 * 64));
  if (!buf) throw std::bad_alloc();
  data_ = buf;
  for (size_t got = 0; got < size_;) {
    const ssize_t n = ::pread(fd, buf + got, size_ - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      std::free(buf);
      data_ = nullptr;
      fail(path, "read", err);
    }
    if (n == 0) {  // truncated while being read: refuse rather than score a half file
      std::free(buf);
      data_ = nullptr;
      fail(path, "read", EIO, "the file shrank while it was read");
    }
    got += size_t(n);
  }
}

MappedFile::~MappedFile() {
  if (mapped_)
    ::munmap(const_cast<uint8_t*>(data_), size_);
  else
    std::free(const_cast<uint8_t*>(data_));
}

}  // namespace dpn::format
