// GEMM drivers and B packing (layout shared by every ISA, only the panel width differs); the
// per-ISA kernels come from the ISA's table (isa_kernels.h).
#include "kernels/gemm.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "kernels/half.h"
#include "kernels/isa_kernels.h"
#include "kernels/kron.h"
#include "runtime/grain.h"
#include "runtime/load_budget.h"
#include "runtime/thread_scratch.h"
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
  bf16 = bf16_kernels = int8 = false;
  half.clear();
  q8.clear();
  runtime::charge_pack(src, uint64_t(packed_size(k, n, nr)) * sizeof(float));  // a model load's bound
  data.assign(static_cast<size_t>(packed_size(k, n, nr)), 0.0f);
  pack_b(src, k, n, rs, cs, nr, data.data());
}

void pack_b_bf16(const float* src, int64_t K, int64_t N, int64_t rs, int64_t cs, uint16_t* dst) {
  const int64_t nr = kBf16Panel, Kp = bf16_pairs(K), panels = (N + nr - 1) / nr;
  for (int64_t p = 0; p < panels; ++p) {
    uint16_t* d = dst + p * Kp * nr * 2;
    const int64_t w = p == panels - 1 && narrow_tail(N, nr) ? nr / 2 : nr;
    const int64_t cols = std::min(nr, N - p * nr);  // <= w; the rest of a pair row stays 0
    for (int64_t q = 0; q < Kp; ++q, d += w * 2) {
      // Rows 2q and 2q + 1 (absent for an odd K's last pair) of this panel's columns.
      const float* r0 = src + 2 * q * rs + p * nr * cs;
      const float* r1 = 2 * q + 1 < K ? r0 + rs : nullptr;
      for (int64_t j = 0; j < cols; ++j) {
        d[2 * j] = f32_to_bf16(r0[j * cs]);
        d[2 * j + 1] = r1 ? f32_to_bf16(r1[j * cs]) : 0;
      }
      for (int64_t j = cols; j < w; ++j) d[2 * j] = d[2 * j + 1] = 0;
    }
  }
}

void round_bf16(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = bf16_to_f32(f32_to_bf16(x[i]));
}

void PackedMatrix::pack_bf16(const float* src, int64_t k, int64_t n, int64_t rs, int64_t cs, Isa which) {
  if (!cpu::available(which)) which = Isa::Ref;
  if (!isa_kernels(which).gemm_bf16) {
    // The widening path: the rounded values in the ISA's float32 layout.
    pack(src, k, n, rs, cs, which);
    round_bf16(data.data(), int64_t(data.size()));
    bf16 = true;
    return;
  }
  bf16 = bf16_kernels = true;
  int8 = false;
  K = k;
  N = n;
  isa = which;
  nr = kBf16Panel;
  runtime::charge_pack(src, uint64_t(bf16_packed_size(k, n)) * sizeof(uint16_t));
  half.assign(static_cast<size_t>(bf16_packed_size(k, n)), 0);
  data.clear();
  pack_b_bf16(src, k, n, rs, cs, half.data());
}

void pack_b_int8(const int8_t* q, int64_t K, int64_t N, int64_t rs, int64_t cs, int8_t* dst) {
  const int64_t nr = kI8Panel, Kq = i8_quads(K), panels = (N + nr - 1) / nr;
  for (int64_t p = 0; p < panels; ++p) {
    int8_t* d = dst + p * Kq * nr * 4;
    const int64_t w = p == panels - 1 && narrow_tail(N, nr) ? nr / 2 : nr;
    const int64_t cols = std::min(nr, N - p * nr);  // <= w; the rest of a quad row stays 0
    for (int64_t kq = 0; kq < Kq; ++kq, d += w * 4)
      for (int64_t j = 0; j < w; ++j)
        for (int64_t t = 0; t < 4; ++t) {
          const int64_t k = 4 * kq + t;
          d[j * 4 + t] = j < cols && k < K ? q[k * rs + (p * nr + j) * cs] : 0;
        }
  }
}

void PackedMatrix::pack_int8(const float* src, int64_t k, int64_t n, int64_t rs, int64_t cs, Isa which) {
  if (k > kI8MaxK) return pack(src, k, n, rs, cs, which);
  if (!cpu::available(which)) which = Isa::Ref;
  runtime::charge_pack(src, uint64_t(i8_packed_size(k, n)) + uint64_t(n) * 8);
  K = k;
  N = n;
  isa = which;
  nr = kI8Panel;
  bf16 = bf16_kernels = false;
  int8 = true;
  data.clear();
  half.clear();
  // Per column, as converters/precision.py quantizes (float32 max / 127, then rint(x / scale)).
  // Visited in the source's memory order (a row-major A' is read by rows, a torch weight by columns).
  auto each = [&](auto&& f) {
    if (rs >= cs) {
      for (int64_t i = 0; i < k; ++i)
        for (int64_t j = 0; j < n; ++j) f(i, j);
    } else {
      for (int64_t j = 0; j < n; ++j)
        for (int64_t i = 0; i < k; ++i) f(i, j);
    }
  };
  std::vector<int8_t> q(size_t(k * n));
  qscale.assign(size_t(n), 0.0f);
  qsum.assign(size_t(n), 0);
  each([&](int64_t i, int64_t j) {
    qscale[size_t(j)] = std::max(qscale[size_t(j)], std::fabs(src[i * rs + j * cs]));
  });
  for (float& s : qscale) s /= 127.0f;
  each([&](int64_t i, int64_t j) {
    const float s = qscale[size_t(j)];
    const float v = s > 0.0f ? std::nearbyint(src[i * rs + j * cs] / s) : 0.0f;
    const int8_t qi = int8_t(std::min(127.0f, std::max(-127.0f, v)));
    q[size_t(i * n + j)] = qi;
    qsum[size_t(j)] += 128 * qi;  // |.| <= 128·127·kI8MaxK < 2^31
  });
  q8.assign(size_t(i8_packed_size(k, n)), 0);
  pack_b_int8(q.data(), k, n, n, 1, q8.data());
}

const char* int8_gemm_path(Isa isa) {
  const IsaKernels& k = isa_kernels(cpu::available(isa) ? isa : Isa::Ref);
  if (k.gemm_i8 == ref::gemm_i8) return "ref";
#if defined(DPN_HAVE_X86_KERNELS)
  if (k.gemm_i8 == avx512amx::gemm_i8) return "avx512amx";
#endif
  return "avx512vnni";
}

namespace {

// Runs fn(n0, n1) over ranges of whole column panels of B (the calling thread takes part 0), as
// many as the work is worth (runtime/grain.h). Packed panels are independent, so a range is just
// an offset into Bp, C and bias.
// (A K × N matrix of panel width nr; a PackedMatrix's or one packed like it.)
template <class F>
void for_column_ranges(int64_t K, int64_t N, int64_t nr, int64_t M, int threads, F&& fn) {
  const int64_t panels = (N + nr - 1) / nr;
  const int64_t parts = runtime::column_parts(M, K * N, std::min<int64_t>(threads, panels));
  if (parts <= 1) return fn(int64_t(0), N);
  runtime::parallel_for(parts, int(parts), [&](int64_t i) {
    // The caller (i = 0, parallel_for) starts first and takes the last range, which holds the
    // partial (half-wide) last panel when there is one, so the later-starting workers get less.
    const int64_t t = parts - 1 - i;
    const int64_t n0 = panels * t / parts * nr, n1 = std::min(N, panels * (t + 1) / parts * nr);
    fn(n0, n1);
  });
}
template <class F>
void for_column_ranges(const PackedMatrix& B, int64_t M, int threads, F&& fn) {
  for_column_ranges(B.K, B.N, B.nr, M, threads, std::forward<F>(fn));
}

// The float32 GEMM on B.data (for a bfloat16 B on the widening path: A already rounded).
void gemm_f32(const float* A, int64_t lda, int64_t M, const PackedMatrix& B, const float* bias, Act act,
              float* C, int64_t ldc, int threads) {
  GemmFn* const kernel = isa_kernels(B.isa).gemm;
  for_column_ranges(B, M, threads, [&](int64_t n0, int64_t n1) {
    kernel(A, lda, M, B.K, B.data.data() + n0 * B.K, n1 - n0, bias ? bias + n0 : nullptr, act, C + n0,
           ldc);
  });
}

// Where packed panel n0 starts in a bfloat16 layout (n0 a multiple of kBf16Panel).
const uint16_t* bf16_panels(const PackedMatrix& B, int64_t n0) {
  return B.half.data() + n0 * 2 * bf16_pairs(B.K);
}

// Where packed panel n0 starts in an int8 layout (n0 a multiple of kI8Panel).
const int8_t* i8_panels(const PackedMatrix& B, int64_t n0) {
  return B.q8.data() + n0 * 4 * i8_quads(B.K);
}

// Rows of A rounded per chunk on the widening path: bounded scratch, and a chunk is worth a pass
// over B (as dylinear's panel chunks).
constexpr int64_t kRoundFloats = int64_t(1) << 18;
constexpr int64_t kRoundMinRows = 64;

}  // namespace

void gemm(const float* A, int64_t lda, int64_t M, const PackedMatrix& B, const float* bias, Act act,
          float* C, int64_t ldc, int threads) {
  if (B.int8) {
    GemmI8Fn* const kernel = isa_kernels(B.isa).gemm_i8;
    for_column_ranges(B, M, threads, [&](int64_t n0, int64_t n1) {
      kernel(A, lda, M, B.K, i8_panels(B, n0), B.qscale.data() + n0, B.qsum.data() + n0, n1 - n0,
             bias ? bias + n0 : nullptr, act, C + n0, ldc);
    });
    return;
  }
  if (!B.bf16) return gemm_f32(A, lda, M, B, bias, act, C, ldc, threads);
  if (B.bf16_kernels) {
    GemmBf16Fn* const kernel = isa_kernels(B.isa).gemm_bf16;
    for_column_ranges(B, M, threads, [&](int64_t n0, int64_t n1) {
      kernel(A, lda, M, B.K, bf16_panels(B, n0), n1 - n0, bias ? bias + n0 : nullptr, act, C + n0, ldc);
    });
    return;
  }
  // Widening path: the float32 kernels never use thread_scratch, so the calling thread's holds the
  // rounded rows (pool threads only read them).
  const int64_t K = B.K, chunk = std::max(kRoundMinRows, kRoundFloats / std::max<int64_t>(1, K));
  for (int64_t r0 = 0; r0 < M; r0 += chunk) {
    const int64_t rows = std::min(chunk, M - r0);
    float* a = runtime::thread_scratch(size_t(std::max<int64_t>(1, rows * K)));
    for (int64_t i = 0; i < rows; ++i) {
      std::copy(A + (r0 + i) * lda, A + (r0 + i) * lda + K, a + i * K);
      round_bf16(a + i * K, K);
    }
    gemm_f32(a, K, rows, B, bias, act, C + r0 * ldc, ldc, threads);
  }
}

bool kron_needs_panel(const PackedMatrix& B) {
  const IsaKernels& k = isa_kernels(B.isa);
  if (B.int8) return false;
  return B.bf16 ? !B.bf16_kernels : k.gemm_kron == nullptr;
}

void gemm_kron(const float* x, int64_t ldx, int64_t m, const float* h, int64_t ldh, int64_t l,
               bool with_h, int64_t rows, const PackedMatrix& B, const float* bias, Act act, float* C,
               int64_t ldc, float* panel, int threads) {
  const IsaKernels& k = isa_kernels(B.isa);
  if (B.int8) {
    for_column_ranges(B, rows, threads, [&](int64_t n0, int64_t n1) {
      k.gemm_kron_i8(x, ldx, m, h, ldh, l, with_h, rows, i8_panels(B, n0), B.qscale.data() + n0,
                     B.qsum.data() + n0, n1 - n0, bias ? bias + n0 : nullptr, act, C + n0, ldc);
    });
    return;
  }
  if (B.bf16_kernels) {
    for_column_ranges(B, rows, threads, [&](int64_t n0, int64_t n1) {
      k.gemm_kron_bf16(x, ldx, m, h, ldh, l, with_h, rows, bf16_panels(B, n0), n1 - n0,
                       bias ? bias + n0 : nullptr, act, C + n0, ldc);
    });
    return;
  }
  if (B.bf16) {
    // Widening path: the whole panel, rounded, through the float32 GEMM.
    k.kron_panel(x, ldx, m, h, ldh, l, rows, with_h, panel, B.K);
    round_bf16(panel, rows * B.K);
    return gemm_f32(panel, B.K, rows, B, bias, act, C, ldc, threads);
  }
  if (k.gemm_kron) {
    // Each thread builds its own [x, h·x] blocks for its column range (per-thread scratch).
    for_column_ranges(B, rows, threads, [&](int64_t n0, int64_t n1) {
      k.gemm_kron(x, ldx, m, h, ldh, l, with_h, rows, B.data.data() + n0 * B.K, n1 - n0,
                  bias ? bias + n0 : nullptr, act, C + n0, ldc);
    });
    return;
  }
  k.kron_panel(x, ldx, m, h, ldh, l, rows, with_h, panel, B.K);
  gemm_f32(panel, B.K, rows, B, bias, act, C, ldc, threads);
}

void kron_collapse(const PackedMatrix& B, int64_t m, int64_t l, const float* h, float* dst,
                   int threads) {
  const int64_t nr = B.nr, panels = (B.N + nr - 1) / nr;
  auto run = [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t w = p == panels - 1 && narrow_tail(B.N, nr) ? nr / 2 : nr, n = m * w;
      const float* s = B.data.data() + p * B.K * nr;  // block k of this panel at s + k·n
      float* d = dst + p * m * nr;
      std::copy(s, s + n, d);
      for (int64_t k = 1; k <= l; ++k) {
        const float hk = h[k - 1];
        const float* sk = s + k * n;
        for (int64_t i = 0; i < n; ++i) d[i] += hk * sk[i];
      }
    }
  };
  // Memory-bound (every float of B read once): a thread per range of panels when asked for.
  const int64_t parts = std::min<int64_t>(std::max(1, threads), panels);
  if (parts <= 1) return run(0, panels);
  runtime::parallel_for(parts, int(parts),
                        [&](int64_t i) { run(panels * i / parts, panels * (i + 1) / parts); });
}

void gemm_packed(const float* A, int64_t lda, int64_t M, int64_t K, const float* Bp,
                 const PackedMatrix& like, const float* bias, Act act, float* C, int64_t ldc,
                 int threads) {
  GemmFn* const kernel = isa_kernels(like.isa).gemm;
  for_column_ranges(K, like.N, like.nr, M, threads, [&](int64_t n0, int64_t n1) {
    kernel(A, lda, M, K, Bp + n0 * K, n1 - n0, bias ? bias + n0 : nullptr, act, C + n0, ldc);
  });
}

void gemm_bf16_ref(const float* A, int64_t lda, int64_t M, const PackedMatrix& B, const float* bias,
                   Act act, float* C, int64_t ldc) {
  ref::gemm_bf16(A, lda, M, B.K, B.half.data(), B.N, bias, act, C, ldc);
}

void gemm_kron_bf16_ref(const float* x, int64_t ldx, int64_t m, const float* h, int64_t ldh, int64_t l,
                        bool with_h, int64_t rows, const PackedMatrix& B, const float* bias, Act act,
                        float* C, int64_t ldc) {
  ref::gemm_kron_bf16(x, ldx, m, h, ldh, l, with_h, rows, B.half.data(), B.N, bias, act, C, ldc);
}

void gemm_i8_ref(const float* A, int64_t lda, int64_t M, const PackedMatrix& B, const float* bias,
                 Act act, float* C, int64_t ldc) {
  ref::gemm_i8(A, lda, M, B.K, B.q8.data(), B.qscale.data(), B.qsum.data(), B.N, bias, act, C, ldc);
}

void gemm_kron_i8_ref(const float* x, int64_t ldx, int64_t m, const float* h, int64_t ldh, int64_t l,
                      bool with_h, int64_t rows, const PackedMatrix& B, const float* bias, Act act,
                      float* C, int64_t ldc) {
  ref::gemm_kron_i8(x, ldx, m, h, ldh, l, with_h, rows, B.q8.data(), B.qscale.data(), B.qsum.data(), B.N,
                    bias, act, C, ldc);
}

}  // namespace dpn::kernels
