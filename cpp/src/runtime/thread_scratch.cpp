#include "runtime/thread_scratch.h"

#include <cstdlib>
#include <new>

namespace dpn::runtime {

namespace {
struct ScratchBuf {
  float* p = nullptr;
  size_t n = 0;
  ~ScratchBuf() { std::free(p); }
};
thread_local ScratchBuf tl_scratch;
}  // namespace

float* thread_scratch(size_t floats) {
  ScratchBuf& b = tl_scratch;
  if (b.n < floats) {
    const size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, bytes);
    if (!p) throw std::bad_alloc();
    std::free(b.p);
    b.p = static_cast<float*>(p);
    b.n = floats;
  }
  return b.p;
}

}  // namespace dpn::runtime
