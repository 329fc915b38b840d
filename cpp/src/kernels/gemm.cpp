// GEMM dispatch and B packing (layout shared by every ISA, only the panel width differs).
#include "kernels/gemm.h"

#include <algorithm>
#include <cstdlib>
#include <exception>
#include <new>

#include "kernels/gemm_isa.h"
#include "kernels/kron.h"
#include "runtime/load_budget.h"
#include "runtime/thread_pool.h"

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
    const int64_t w = p == panels - 1 && narrow_tail(N, nr) ? nr / 2 : nr;  // this panel's stride
    for (int64_t k = 0; k < K; ++k)
      for (int64_t j = 0; j < w; ++j) {
        const int64_t n = p * nr + j;
        d[k * w + j] = n < N ? src[k * rs + n * cs] : 0.0f;
      }
  }
}

void PackedMatrix::pack(const float* src, int64_t k, int64_t n, int64_t rs, int64_t cs, Isa which) {
  if (!cpu::available(which)) which = Isa::Ref;
  K = k;
  N = n;
  isa = which;
  nr = panel_width(which);
  runtime::charge_pack(src, uint64_t(packed_size(k, n, nr)) * sizeof(float));  // a model load's bound
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

namespace {

// Each extra thread must get at least this many multiply-adds (~20 µs of FMAs): waking a sleeping
// worker costs ~10-20 µs, so smaller splits make a call slower, not faster (ml1m at batch 16 did).
constexpr int64_t kMinMacsPerPart = int64_t(1) << 20;

// Runs fn(n0, n1) over `parts` ranges of whole column panels of B (the calling thread takes part 0).
// Packed panels are independent, so a range is just an offset into Bp, C and bias.
template <class F>
void for_column_ranges(const PackedMatrix& B, int64_t M, int threads, F&& fn) {
  const int64_t panels = (B.N + B.nr - 1) / B.nr;
  // Below ~8 rows a GEMM streams its weights from cache or memory rather than computing: a row
  // then costs about what 8 rows cost, so count at least 8 (criteo at batch 1 gains from 2 threads).
  const int64_t work = std::max<int64_t>(M, 8) * B.K * B.N;
  const int64_t parts = std::max<int64_t>(1, std::min({int64_t(threads), panels, work / kMinMacsPerPart}));
  if (parts <= 1) return fn(int64_t(0), B.N);
  runtime::parallel_for(parts, int(parts), [&](int64_t i) {
    // The caller (i = 0, parallel_for) starts first and takes the last range, which holds the
    // partial (half-wide) last panel when there is one, so the later-starting workers get less.
    const int64_t t = parts - 1 - i;
    const int64_t n0 = panels * t / parts * B.nr, n1 = std::min(B.N, panels * (t + 1) / parts * B.nr);
    fn(n0, n1);
  });
}

}  // namespace

void gemm(const float* A, int64_t lda, int64_t M, const PackedMatrix& B, const float* bias, Act act,
          float* C, int64_t ldc, int threads) {
  for_column_ranges(B, M, threads, [&](int64_t n0, int64_t n1) {
    gemm_packed(B.isa, A, lda, M, B.K, B.data.data() + n0 * B.K, n1 - n0, bias ? bias + n0 : nullptr,
                act, C + n0, ldc);
  });
}

bool kron_needs_panel(const PackedMatrix& B) {
#if defined(DPN_HAVE_X86_KERNELS)
  return B.isa != Isa::Avx512;
#else
  (void)B;
  return true;
#endif
}

void gemm_kron(const float* x, int64_t ldx, int64_t m, const float* h, int64_t ldh, int64_t l,
               bool with_h, int64_t rows, const PackedMatrix& B, const float* bias, Act act,
               float* C, int64_t ldc, float* panel, int threads) {
#if defined(DPN_HAVE_X86_KERNELS)
  if (!kron_needs_panel(B)) {
    // Each thread builds its own [x, h·x] blocks for its column range (per-thread scratch).
    for_column_ranges(B, rows, threads, [&](int64_t n0, int64_t n1) {
      gemm_kron_avx512(x, ldx, m, h, ldh, l, with_h, rows, B.data.data() + n0 * B.K, n1 - n0,
                       bias ? bias + n0 : nullptr, act, C + n0, ldc);
    });
    return;
  }
#endif
  kron_panel(x, ldx, m, h, ldh, l, rows, with_h, panel, B.K);
  gemm(panel, B.K, rows, B, bias, act, C, ldc, threads);
}

}  // namespace dpn::kernels
