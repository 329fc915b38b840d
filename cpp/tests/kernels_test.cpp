// Kernels against their scalar reference: every ISA this CPU has vs gemm_ref / *_ref, and gemm_ref
// itself vs a plain double-precision triple loop. Shapes cover tails of every panel width.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <random>
#include <vector>

#include "cpu/cpu_features.h"
#include "kernels/act.h"
#include "kernels/gemm.h"
#include "kernels/gru.h"
#include "kernels/half.h"
#include "kernels/rows.h"

using dpn::cpu::Isa;
using dpn::kernels::Act;

namespace {

std::vector<float> randn(size_t n, std::mt19937& g, float s = 1.0f) {
  std::normal_distribution<float> d(0.0f, s);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

std::vector<Isa> isas() {
  std::vector<Isa> v{Isa::Ref};
  for (Isa i : {Isa::Avx2, Isa::Avx512, Isa::Avx512Bf16, Isa::Avx512Amx})
    if (dpn::cpu::available(i)) v.push_back(i);
  return v;
}

}  // namespace

TEST(Kernels, GemmEveryIsaMatchesDoubleLoop) {
  std::mt19937 g(7);
  for (Isa isa : isas()) {
    SCOPED_TRACE(dpn::cpu::isa_name(isa));
    for (int64_t M : {1, 3, 8, 33})
      for (int64_t K : {1, 5, 17, 64})
        for (int64_t N : {1, 7, 16, 33, 65})
          for (Act act : {Act::Identity, Act::Relu, Act::Sigmoid, Act::Tanh}) {
            const auto A = randn(size_t(M * K), g), W = randn(size_t(N * K), g),
                       bias = randn(size_t(N), g);
            dpn::kernels::PackedMatrix pm;
            pm.pack(W.data(), K, N, 1, K, isa);  // torch layout [N, K]
            std::vector<float> C(size_t(M * N), 123.0f);
            dpn::kernels::gemm(A.data(), K, M, pm, bias.data(), act, C.data(), N);
            for (int64_t i = 0; i < M; ++i)
              for (int64_t j = 0; j < N; ++j) {
                double s = bias[size_t(j)], mag = std::fabs(bias[size_t(j)]);
                for (int64_t k = 0; k < K; ++k) {
                  s += double(A[size_t(i * K + k)]) * W[size_t(j * K + k)];
                  mag += std::fabs(double(A[size_t(i * K + k)]) * W[size_t(j * K + k)]);
                }
                const float want = dpn::kernels::apply(act, float(s));
                // float32 accumulation error bound: a few ulp of the sum of magnitudes
                EXPECT_NEAR(C[size_t(i * N + j)], want, 1e-5 + 1e-6 * mag * K)
                    << "M" << M << " K" << K << " N" << N << " act" << int(act);
              }
          }
  }
}

// bfloat16 weights (PackedMatrix::pack_bf16): integers |v| <= 15 are bfloat16 values and every
// partial sum is an exact float32 integer, so each ISA's path (AVX512_BF16 or widening) must give
// the double loop's bits, for the static and the Kronecker GEMM (odd K: a padded last k-pair).
TEST(Kernels, Bf16GemmEveryIsaExactOnSmallIntegers) {
  std::mt19937 g(5);
  std::uniform_int_distribution<int> d(-15, 15);
  auto ints = [&](size_t n) {
    std::vector<float> v(n);
    for (auto& x : v) x = float(d(g));
    return v;
  };
  for (Isa isa : isas()) {
    SCOPED_TRACE(dpn::cpu::isa_name(isa));
    for (auto [M, K, N] : {std::array<int64_t, 3>{1, 1, 1}, {3, 7, 17}, {13, 33, 49}, {75, 1537, 65}}) {
      const auto A = ints(size_t(M * K)), W = ints(size_t(N * K)), bias = ints(size_t(N));
      dpn::kernels::PackedMatrix pm;
      pm.pack_bf16(W.data(), K, N, 1, K, isa);  // torch layout [N, K]
      std::vector<float> C(size_t(M * N), 123.0f);
      dpn::kernels::gemm(A.data(), K, M, pm, bias.data(), Act::Identity, C.data(), N);
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {
          double s = bias[size_t(j)];
          for (int64_t k = 0; k < K; ++k) s += double(A[size_t(i * K + k)]) * W[size_t(j * K + k)];
          ASSERT_EQ(C[size_t(i * N + j)], float(s)) << "M" << M << " K" << K << " N" << N;
        }
    }
    // Kronecker: x, h small integers (h·x exact), B [K, N] row-major.
    const int64_t R = 13, m = 11, l = 3, N = 40, K = (l + 1) * m + l;
    std::uniform_int_distribution<int> d3(-3, 3);
    std::vector<float> x(size_t(R * m)), h(size_t(R * l)), B(size_t(K * N));
    for (auto& v : x) v = float(d3(g));
    for (auto& v : h) v = float(d3(g));
    for (auto& v : B) v = float(d3(g));
    dpn::kernels::PackedMatrix pm;
    pm.pack_bf16(B.data(), K, N, N, 1, isa);
    std::vector<float> C(size_t(R * N)), panel(size_t(R * K));
    dpn::kernels::gemm_kron(x.data(), m, m, h.data(), l, l, true, R, pm, nullptr, Act::Identity,
                            C.data(), N, panel.data());
    for (int64_t b = 0; b < R; ++b)
      for (int64_t j = 0; j < N; ++j) {
        double s = 0;
        for (int64_t k = 0; k < K; ++k) {
          const int64_t seg = k / m;
          const double p = k >= (l + 1) * m ? h[size_t(b * l + (k - (l + 1) * m))]
                           : seg == 0 ? x[size_t(b * m + k)]
                                      : double(h[size_t(b * l + seg - 1)]) * x[size_t(b * m + k % m)];
          s += p * B[size_t(k * N + j)];
        }
        ASSERT_EQ(C[size_t(b * N + j)], float(s)) << "kron row " << b << " col " << j;
      }
  }
}

TEST(Kernels, RowKernelsEveryIsaMatchRef) {
  std::mt19937 g(11);
  for (Isa isa : isas()) {
    SCOPED_TRACE(dpn::cpu::isa_name(isa));
    for (int64_t d : {1, 3, 8, 16, 17, 33, 100}) {
      const int64_t vocab = 9, rows = 5;
      const auto table = randn(size_t(vocab * d), g);
      const int64_t ids[] = {3, 0, 8, 3, 5};
      std::vector<float> a(static_cast<size_t>(d)), b(static_cast<size_t>(d));
      dpn::kernels::pool_rows(Isa::Ref, table.data(), d, ids, 5, 0.2f, a.data());
      dpn::kernels::pool_rows(isa, table.data(), d, ids, 5, 0.2f, b.data());
      EXPECT_EQ(a, b) << "pool d" << d;  // documented: same bits on every ISA
      // float16 / bfloat16 tables: the same bits as pool_rows over the widened table.
      for (bool bf16 : {true, false}) {
        std::vector<uint16_t> half(table.size());
        std::vector<float> wide(table.size());
        for (size_t i = 0; i < table.size(); ++i) {
          half[i] = bf16 ? dpn::kernels::f32_to_bf16(table[i]) : uint16_t(0x3C00u + (i * 977u) % 0x800u);
          wide[i] = dpn::kernels::half_to_f32(half[i], bf16);
        }
        dpn::kernels::pool_rows(Isa::Ref, wide.data(), d, ids, 5, 0.2f, a.data());
        dpn::kernels::pool_rows_half(isa, half.data(), bf16, d, ids, 5, 0.2f, b.data());
        EXPECT_EQ(a, b) << "pool_half d" << d << " bf16 " << bf16;
      }
      // int8 tables: scales[r] * q, one multiply each, then the same sums as over the dequantized table.
      {
        std::vector<int8_t> q(table.size());
        std::vector<float> scales(static_cast<size_t>(vocab)), wide(table.size());
        for (int64_t r = 0; r < vocab; ++r) scales[size_t(r)] = r == 2 ? 0.0f : 0.01f * float(r + 1);
        for (size_t i = 0; i < table.size(); ++i) {
          q[i] = int8_t(int((i * 37u) % 255u) - 127);
          wide[i] = scales[i / size_t(d)] * float(q[i]);
        }
        dpn::kernels::pool_rows(Isa::Ref, wide.data(), d, ids, 5, 0.2f, a.data());
        dpn::kernels::pool_rows_int8(isa, q.data(), scales.data(), d, ids, 5, 0.2f, b.data());
        EXPECT_EQ(a, b) << "pool_int8 d" << d;
      }

      const auto x = randn(size_t(rows * d), g, 3.0f), x0 = randn(size_t(rows * d), g);
      const auto w = randn(size_t(d), g), bb = randn(size_t(d), g);
      std::vector<float> r(size_t(rows * d)), s(size_t(rows * d));
      dpn::kernels::layernorm_rows(Isa::Ref, x.data(), rows, d, w.data(), bb.data(), 1e-5f, r.data());
      dpn::kernels::layernorm_rows(isa, x.data(), rows, d, w.data(), bb.data(), 1e-5f, s.data());
      for (size_t i = 0; i < r.size(); ++i)
        EXPECT_NEAR(s[i], r[i], 1e-5 + 1e-4 * std::fabs(r[i])) << "ln d" << d;
      dpn::kernels::cross_rows(Isa::Ref, x0.data(), x.data(), rows, d, w.data(), bb.data(), r.data());
      dpn::kernels::cross_rows(isa, x0.data(), x.data(), rows, d, w.data(), bb.data(), s.data());
      for (size_t i = 0; i < r.size(); ++i)
        EXPECT_NEAR(s[i], r[i], 1e-5 + 1e-4 * std::fabs(r[i])) << "cross d" << d;

      std::vector<float> e = randn(size_t(rows * d), g, 4.0f), f = e;
      for (Act act : {Act::Relu, Act::Sigmoid, Act::Tanh}) {
        std::vector<float> p = e, q = f;
        dpn::kernels::act_inplace(Isa::Ref, p.data(), int64_t(p.size()), act);
        dpn::kernels::act_inplace(isa, q.data(), int64_t(q.size()), act);
        for (size_t i = 0; i < p.size(); ++i) EXPECT_NEAR(q[i], p[i], 1e-6 + 1e-5 * std::fabs(p[i]));
      }
    }
  }
}

// The GRU / AUGRU step (gru.h) on every ISA within a few ulp of the reference, across vector tails.
TEST(Kernels, GruGatesEveryIsaMatchRef) {
  std::mt19937 g(13);
  for (Isa isa : isas()) {
    SCOPED_TRACE(dpn::cpu::isa_name(isa));
    for (int64_t h : {1, 7, 8, 9, 16, 17, 33}) {
      const int64_t rows = 3;
      const auto gi = randn(size_t(rows * 3 * h), g, 3.0f), gh = randn(size_t(rows * 3 * h), g, 3.0f);
      const auto s0 = randn(size_t(rows * h), g, 0.5f);
      const std::vector<float> att{0.0f, 0.3f, 1.0f};
      for (const float* a : {static_cast<const float*>(nullptr), att.data()}) {
        std::vector<float> r = s0, s = s0;
        dpn::kernels::gru_gates(Isa::Ref, gi.data(), gh.data(), a, rows, h, r.data());
        dpn::kernels::gru_gates(isa, gi.data(), gh.data(), a, rows, h, s.data());
        for (size_t i = 0; i < r.size(); ++i)
          EXPECT_NEAR(s[i], r[i], 1e-6) << "h" << h << (a ? " augru" : "");
      }
    }
  }
}
