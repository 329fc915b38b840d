// GEMM drivers and B packing (layout shared by every ISA, only the panel width differs); the
// per-ISA kernels come from the ISA's table (isa_kernels.h).
#include "kernels/gemm.h"

#include <algorithm>

#include "kernels/isa_kernels.h"
#include "kernels/kron.h"
#include "runtime/grain.h"
#include "runtime/load_budget.h"
#include "runtime/thread_pool.h"

namespace dpn::kernels {

int64_t panel_width(Isa isa) { return isa_kernels(isa).panel_width; }

void pack_b(const float* src, int64_t K, int64_t N, int64_t rs, int64_t cs, int64_t nr, float* dst) {
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

namespace {

// Runs fn(n0, n1) over ranges of whole column panels of B (the calling thread takes part 0), as
// many as the work is worth (runtime/grain.h). Packed panels are independent, so a range is just
// an offset into Bp, C and bias.
template <class F>
void for_column_ranges(const PackedMatrix& B, int64_t M, int threads, F&& fn) {
  const int64_t panels = (B.N + B.nr - 1) / B.nr;
  const int64_t parts = runtime::column_parts(M, B.K * B.N, std::min<int64_t>(threads, panels));
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
  GemmFn* const kernel = isa_kernels(B.isa).gemm;
  for_column_ranges(B, M, threads, [&](int64_t n0, int64_t n1) {
    kernel(A, lda, M, B.K, B.data.data() + n0 * B.K, n1 - n0, bias ? bias + n0 : nullptr, act, C + n0,
           ldc);
  });
}

bool kron_needs_panel(const PackedMatrix& B) { return isa_kernels(B.isa).gemm_kron == nullptr; }

void gemm_kron(const float* x, int64_t ldx, int64_t m, const float* h, int64_t ldh, int64_t l,
               bool with_h, int64_t rows, const PackedMatrix& B, const float* bias, Act act, float* C,
               int64_t ldc, float* panel, int threads) {
  const IsaKernels& k = isa_kernels(B.isa);
  if (k.gemm_kron) {
    // Each thread builds its own [x, h·x] blocks for its column range (per-thread scratch).
    for_column_ranges(B, rows, threads, [&](int64_t n0, int64_t n1) {
      k.gemm_kron(x, ldx, m, h, ldh, l, with_h, rows, B.data.data() + n0 * B.K, n1 - n0,
                  bias ? bias + n0 : nullptr, act, C + n0, ldc);
    });
    return;
  }
  k.kron_panel(x, ldx, m, h, ldh, l, rows, with_h, panel, B.K);
  gemm(panel, B.K, rows, B, bias, act, C, ldc, threads);
}

}  // namespace dpn::kernels
