// GEMM dispatch and B packing (layout shared by every ISA, only the panel width differs).
#include "kernels/gemm.h"

#include <cstdlib>
#include <new>

#include "kernels/gemm_isa.h"
#include "kernels/kron.h"

namespace dpn::kernels {

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

int64_t panel_width(Isa isa) {
  switch (isa) {
    case Isa::Ref: return 8;
    case Isa::Avx2: return 16;
    case Isa::Avx512: return 32;
  }
  return 8;
}

void pack_b(const float* src, int64_t K, int64_t N, int64_t rs, int64_t cs, int64_t nr,
            float* dst) {
  const int64_t panels = (N + nr - 1) / nr;
  for (int64_t p = 0; p < panels; ++p) {
    float* d = dst + p * K * nr;
    for (int64_t k = 0; k < K; ++k)
      for (int64_t j = 0; j < nr; ++j) {
        const int64_t n = p * nr + j;
        d[k * nr + j] = n < N ? src[k * rs + n * cs] : 0.0f;
      }
  }
}

void PackedMatrix::pack(const float* src, int64_t k, int64_t n, int64_t rs, int64_t cs, Isa which) {
  if (!cpu::available(which)) which = Isa::Ref;
  K = k;
  N = n;
  isa = which;
  nr = panel_width(which);
  data.assign(static_cast<size_t>(packed_size(k, n, nr)), 0.0f);
  pack_b(src, k, n, rs, cs, nr, data.data());
}

void gemm_packed(Isa isa, const float* A, int64_t lda, int64_t M, int64_t K, const float* Bp,
                 int64_t N, const float* bias, Act act, float* C, int64_t ldc) {
  switch (isa) {
#if defined(DPN_HAVE_X86_KERNELS)
    case Isa::Avx512: return gemm_avx512(A, lda, M, K, Bp, N, bias, act, C, ldc);
    case Isa::Avx2: return gemm_avx2(A, lda, M, K, Bp, N, bias, act, C, ldc);
#endif
    default: return gemm_ref(A, lda, M, K, Bp, N, bias, act, C, ldc);
  }
}

void gemm_kron(const float* x, int64_t ldx, int64_t m, const float* h, int64_t ldh, int64_t l,
               bool with_h, int64_t rows, const PackedMatrix& B, const float* bias, Act act,
               float* C, int64_t ldc, float* panel) {
#if defined(DPN_HAVE_X86_KERNELS)
  if (B.isa == Isa::Avx512 && m > 0) {
    gemm_kron_avx512(x, ldx, m, h, ldh, l, with_h, rows, B.data.data(), B.N, bias, act, C, ldc);
    return;
  }
#endif
  kron_panel(x, ldx, m, h, ldh, l, rows, with_h, panel, B.K);
  gemm(panel, B.K, rows, B, bias, act, C, ldc);
}

}  // namespace dpn::kernels
