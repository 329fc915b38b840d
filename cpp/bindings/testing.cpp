// pybind11 module dpn_infer._testing: kernel entry points for the tests and the benchmark, kept
// out of the production module dpn_infer._engine. Every function runs one named ISA's kernel
// (whatever the process selected), so one test session checks every kernel path the machine has.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "cpu/cpu_features.h"
#include "diag/probe.h"
#include "kernels/act.h"
#include "kernels/attention.h"
#include "kernels/dwconv.h"
#include "kernels/gru.h"
#include "kernels/field_attn.h"
#include "kernels/field_mix.h"
#include "kernels/gemm.h"
#include "kernels/kfatt.h"
#include "kernels/kron.h"
#include "kernels/rows.h"
#include "kernels/softmax.h"

namespace py = pybind11;

namespace {

// An ISA the caller names, which must run here.
dpn::cpu::Isa isa_arg(const std::string& isa) {
  dpn::cpu::Isa which;
  if (!dpn::cpu::parse_isa(isa, &which)) throw py::value_error("unknown isa '" + isa + "'");
  if (!dpn::cpu::available(which)) throw py::value_error("isa '" + isa + "' not available here");
  return which;
}

dpn::kernels::Act parse_act(const std::string& a) {
  if (a == "identity" || a == "none") return dpn::kernels::Act::Identity;
  if (a == "relu") return dpn::kernels::Act::Relu;
  if (a == "sigmoid") return dpn::kernels::Act::Sigmoid;
  if (a == "tanh") return dpn::kernels::Act::Tanh;
  throw py::value_error("unknown act '" + a + "'");
}

// A weight packed for one ISA: float32, or (bf16) as a bfloat16 weight, or (twin) in the bfloat16
// layout for the reference twins whatever the ISA; int8: as an int8 weight (one layout for the
// kernels and their twins).
void pack_for(dpn::kernels::PackedMatrix& pm, const float* src, int64_t K, int64_t N, int64_t rs,
              int64_t cs, dpn::cpu::Isa which, bool bf16, bool twin, bool int8) {
  if (int8) {
    pm.pack_int8(src, K, N, rs, cs, which);
  } else if (twin) {
    pm.K = K;
    pm.N = N;
    pm.nr = dpn::kernels::kBf16Panel;
    pm.bf16 = pm.bf16_kernels = true;
    pm.half.assign(size_t(dpn::kernels::bf16_packed_size(K, N)), 0);
    dpn::kernels::pack_b_bf16(src, K, N, rs, cs, pm.half.data());
  } else if (bf16) {
    pm.pack_bf16(src, K, N, rs, cs, which);
  } else {
    pm.pack(src, K, N, rs, cs, which);
  }
}

// C = act(A · Wᵀ + bias) with one ISA's kernel (W in torch layout [N, K]); `repeat`
// runs the GEMM that many times (for timing scripts). The weight is packed for that ISA; with
// bf16, as a bfloat16 weight (W rounded to bfloat16, and A as the GEMM reads it); with twin, the
// reference twin of the bfloat16 kernels (isa ignored).
py::array_t<float> test_gemm(py::array_t<float, py::array::c_style | py::array::forcecast> A,
                             py::array_t<float, py::array::c_style | py::array::forcecast> W,
                             py::object bias, const std::string& act, const std::string& isa, int repeat,
                             bool bf16, bool twin, bool int8) {
  if (A.ndim() != 2 || W.ndim() != 2 || A.shape(1) != W.shape(1))
    throw py::value_error("expected A [M, K] and W [N, K]");
  const dpn::cpu::Isa which = isa_arg(isa);
  const int64_t M = A.shape(0), K = A.shape(1), N = W.shape(0);
  py::array_t<float, py::array::c_style | py::array::forcecast> b;
  if (!bias.is_none()) {
    b = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(bias);
    if (!b || b.ndim() != 1 || b.shape(0) != N) throw py::value_error("bias must be [N]");
  }
  const dpn::kernels::Act a = parse_act(act);
  dpn::kernels::PackedMatrix pm;
  pack_for(pm, W.data(), K, N, 1, K, which, bf16, twin, int8);
  py::array_t<float> C({M, N});
  float* pc = C.mutable_data();
  const float* pa = A.data();
  const float* pb = bias.is_none() ? nullptr : b.data();
  {
    py::gil_scoped_release nogil;
    for (int r = 0; r < std::max(1, repeat); ++r)
      twin&& int8 ? dpn::kernels::gemm_i8_ref(pa, K, M, pm, pb, a, pc, N)
      : twin      ? dpn::kernels::gemm_bf16_ref(pa, K, M, pm, pb, a, pc, N)
                  : dpn::kernels::gemm(pa, K, M, pm, pb, a, pc, N);
  }
  return C;
}

// The Kronecker GEMM of a dynamic layer with one ISA's path (AVX-512 builds the panel
// block by block inside its GEMM): act([x, h_1·x, …, h_l·x, (h)] · B + bias), B row-major [K, N].
py::array_t<float> test_gemm_kron(py::array_t<float, py::array::c_style | py::array::forcecast> x,
                                  py::array_t<float, py::array::c_style | py::array::forcecast> h,
                                  py::array_t<float, py::array::c_style | py::array::forcecast> B,
                                  py::object bias, const std::string& act, bool with_h,
                                  const std::string& isa, int repeat, bool bf16, bool twin, bool int8) {
  if (x.ndim() != 2 || h.ndim() != 2 || B.ndim() != 2 || x.shape(0) != h.shape(0))
    throw py::value_error("expected x [R, m], h [R, l], B [K, N]");
  const int64_t R = x.shape(0), m = x.shape(1), l = h.shape(1), K = B.shape(0), N = B.shape(1);
  if (K != (l + 1) * m + (with_h ? l : 0)) throw py::value_error("B must have (l+1)*m (+l) rows");
  const dpn::cpu::Isa which = isa_arg(isa);
  py::array_t<float, py::array::c_style | py::array::forcecast> b;
  if (!bias.is_none()) {
    b = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(bias);
    if (!b || b.ndim() != 1 || b.shape(0) != N) throw py::value_error("bias must be [N]");
  }
  dpn::kernels::PackedMatrix pm;
  pack_for(pm, B.data(), K, N, N, 1, which, bf16, twin, int8);
  std::vector<float> panel(size_t(std::max<int64_t>(1, R * K)));
  py::array_t<float> C({R, N});
  const float *px = x.data(), *ph = h.data(), *pb = bias.is_none() ? nullptr : b.data();
  float* pc = C.mutable_data();
  const dpn::kernels::Act a = parse_act(act);
  {
    py::gil_scoped_release nogil;
    for (int r = 0; r < std::max(1, repeat); ++r)  // repeat > 1: timing, packing excluded
      twin&& int8 ? dpn::kernels::gemm_kron_i8_ref(px, m, m, ph, l, l, with_h, R, pm, pb, a, pc, N)
      : twin ? dpn::kernels::gemm_kron_bf16_ref(px, m, m, ph, l, l, with_h, R, pm, pb, a, pc, N)
             : dpn::kernels::gemm_kron(px, m, m, ph, l, l, with_h, R, pm, pb, a, pc, N, panel.data());
  }
  return C;
}

// A ranking request's collapsed Kronecker weight with one ISA: W_h = A_0 + Σ_k h_k A_k built in the
// packed layout (kron_collapse), then x · W_h (gemm_packed) for every row of x. B row-major
// [(l+1)·m, N], h [l] (one context for all rows).
py::array_t<float> test_gemm_collapsed(py::array_t<float, py::array::c_style | py::array::forcecast> x,
                                       py::array_t<float, py::array::c_style | py::array::forcecast> h,
                                       py::array_t<float, py::array::c_style | py::array::forcecast> B,
                                       const std::string& isa, int threads) {
  if (x.ndim() != 2 || h.ndim() != 1 || B.ndim() != 2)
    throw py::value_error("expected x [R, m], h [l], B [K, N]");
  const int64_t R = x.shape(0), m = x.shape(1), l = h.shape(0), K = B.shape(0), N = B.shape(1);
  if (K != (l + 1) * m) throw py::value_error("B must have (l+1)*m rows");
  dpn::kernels::PackedMatrix pm;
  pm.pack(B.data(), K, N, N, 1, isa_arg(isa));
  std::vector<float> W(size_t(std::max<int64_t>(1, dpn::kernels::packed_size(m, N, pm.nr))));
  py::array_t<float> C({R, N});
  {
    py::gil_scoped_release nogil;
    dpn::kernels::kron_collapse(pm, m, l, h.data(), W.data(), threads);
    dpn::kernels::gemm_packed(x.data(), m, R, m, W.data(), pm, nullptr, dpn::kernels::Act::Identity,
                              C.mutable_data(), N, threads);
  }
  return C;
}

using F32 = py::array_t<float, py::array::c_style | py::array::forcecast>;

F32 kw_f32(const py::kwargs& kw, const char* name, int ndim) {
  if (!kw.contains(name)) throw py::value_error(std::string("missing array '") + name + "'");
  F32 a = F32::ensure(kw[name]);
  if (!a || a.ndim() != ndim)
    throw py::value_error(std::string("'") + name + "' must be a " + std::to_string(ndim) +
                          "-d float array");
  return a;
}

// One row/elementwise kernel with one ISA's version (the `repeat` keyword runs it that
// many times, for timing scripts). Keywords per kernel (returns a new array):
//   pool:      table [V, dim], rows int64 [R, n], scale=1.0   -> [R, dim] (one pool_rows per row)
//   pool_half: table uint16 [V, dim] (the raw bits), bf16=True, rows, scale as pool -> [R, dim]
//   pool_int8: table int8 [V, dim], scales float32 [V], rows, scale as pool -> [R, dim]
//   layernorm: x [R, d], w [d], b [d], eps=1e-5               -> [R, d]
//   cross:     x0 [R, d], xl [R, d], w [d], b [d]             -> [R, d]
//   act:       x [n], act="relu"                              -> [n]
//   softmax:   x [R, C]                                       -> [R, C]
//   kron:      x [R, m], h [R, l], with_h=True                -> [R, (l+1)·m (+ l)]
//   dwconv:    x [T, n], K [k, n], length=T                   -> [T, n] (rows >= length left 0)
//   dwconv_mean: x [T, n], K [k, n], length=T                 -> [n] (the mean of dwconv's rows)
//   attention: qkv [L, 3d], heads=1, scale=1/sqrt(d/heads)    -> [L, d]
//   gru:       gi [R, 3h], gh [R, 3h], state [R, h], att [R] (AUGRU; none: GRU) -> new state [R, h]
py::array_t<float> test_kernel(const std::string& kernel, const std::string& isa, const py::kwargs& kw) {
  namespace k = dpn::kernels;
  const dpn::cpu::Isa which = isa_arg(isa);
  const int repeat = std::max(1, kw.contains("repeat") ? kw["repeat"].cast<int>() : 1);
  auto run = [&](auto&& fn) {
    py::gil_scoped_release nogil;
    for (int r = 0; r < repeat; ++r) fn();
  };
  if (kernel == "pool" || kernel == "pool_half" || kernel == "pool_int8") {
    const bool half = kernel == "pool_half", i8 = kernel == "pool_int8";
    using U16 = py::array_t<uint16_t, py::array::c_style | py::array::forcecast>;
    using I8 = py::array_t<int8_t, py::array::c_style | py::array::forcecast>;
    F32 t = half || i8 ? F32() : kw_f32(kw, "table", 2);
    U16 th = half ? U16::ensure(kw["table"]) : U16();
    if (half && (!th || th.ndim() != 2)) throw py::value_error("'table' must be a 2-d uint16 array");
    I8 tq = i8 ? I8::ensure(kw["table"]) : I8();
    if (i8 && (!tq || tq.ndim() != 2)) throw py::value_error("'table' must be a 2-d int8 array");
    F32 sc = i8 ? kw_f32(kw, "scales", 1) : F32();
    if (i8 && sc.shape(0) != tq.shape(0)) throw py::value_error("'scales' must have one value per row");
    const bool bf16 = !kw.contains("bf16") || kw["bf16"].cast<bool>();
    auto rows = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(kw["rows"]);
    if (!rows || rows.ndim() != 2) throw py::value_error("'rows' must be a 2-d int64 array");
    const int64_t V = half ? th.shape(0) : i8 ? tq.shape(0) : t.shape(0);
    const int64_t dim = half ? th.shape(1) : i8 ? tq.shape(1) : t.shape(1);
    const int64_t R = rows.shape(0), n = rows.shape(1);
    for (int64_t i = 0; i < R * n; ++i)
      if (rows.data()[i] < 0 || rows.data()[i] >= V) throw py::value_error("row index out of range");
    const float scale = kw.contains("scale") ? kw["scale"].cast<float>() : 1.0f;
    py::array_t<float> out({R, dim});
    float* po = out.mutable_data();
    const float* pt = half || i8 ? nullptr : t.data();
    const uint16_t* ph = half ? th.data() : nullptr;
    const int8_t* pq = i8 ? tq.data() : nullptr;
    const float* ps = i8 ? sc.data() : nullptr;
    const int64_t* pr = rows.data();
    run([&] {
      for (int64_t i = 0; i < R; ++i)
        if (i8)
          k::pool_rows_int8(which, pq, ps, dim, pr + i * n, n, scale, po + i * dim);
        else if (half)
          k::pool_rows_half(which, ph, bf16, dim, pr + i * n, n, scale, po + i * dim);
        else
          k::pool_rows(which, pt, dim, pr + i * n, n, scale, po + i * dim);
    });
    return out;
  }
  if (kernel == "layernorm" || kernel == "cross") {
    const bool ln = kernel == "layernorm";
    F32 x = kw_f32(kw, ln ? "x" : "x0", 2), w = kw_f32(kw, "w", 1), b = kw_f32(kw, "b", 1);
    const int64_t R = x.shape(0), d = x.shape(1);
    F32 xl = ln ? x : kw_f32(kw, "xl", 2);
    if (w.shape(0) != d || b.shape(0) != d || xl.shape(0) != R || xl.shape(1) != d)
      throw py::value_error("shape mismatch");
    const float eps = kw.contains("eps") ? kw["eps"].cast<float>() : 1e-5f;
    py::array_t<float> y({R, d});
    float* py_ = y.mutable_data();
    run([&] {
      if (ln)
        k::layernorm_rows(which, x.data(), R, d, w.data(), b.data(), eps, py_);
      else
        k::cross_rows(which, x.data(), xl.data(), R, d, w.data(), b.data(), py_);
    });
    return y;
  }
  if (kernel == "act" || kernel == "softmax") {
    const bool act = kernel == "act";
    F32 x = kw_f32(kw, "x", act ? 1 : 2);
    const k::Act a =
        act ? parse_act(kw.contains("act") ? kw["act"].cast<std::string>() : "relu") : k::Act::Identity;
    py::array_t<float> y(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
    float* py_ = y.mutable_data();
    const int64_t n = x.size();
    run([&] {
      std::copy(x.data(), x.data() + n, py_);
      if (act)
        k::act_inplace(which, py_, n, a);
      else
        k::softmax_rows(which, py_, x.shape(0), x.shape(1), x.shape(1));
    });
    return y;
  }
  if (kernel == "field_mix") {
    F32 W = kw_f32(kw, "W", 2), T = kw_f32(kw, "T", 3), y0 = kw_f32(kw, "y", 3);
    const int64_t R = T.shape(0), t = T.shape(1), c = T.shape(2);
    if (W.shape(0) != t || W.shape(1) != t || y0.shape(0) != R || y0.shape(1) != t || y0.shape(2) != c)
      throw py::value_error("W [t, t], T and y [R, t, c]");
    const bool acc = kw.contains("accumulate") ? kw["accumulate"].cast<bool>() : true;
    const bool has_bias = kw.contains("bias");
    F32 b = has_bias ? kw_f32(kw, "bias", 1) : F32();
    if (has_bias && b.shape(0) != c) throw py::value_error("bias [c]");
    py::array_t<float> y({R, t, c});
    float* py_ = y.mutable_data();
    const float* pb = has_bias ? b.data() : nullptr;
    run([&] {
      std::copy(y0.data(), y0.data() + R * t * c, py_);
      k::field_mix(which, W.data(), T.data(), R, t, c, pb, acc, py_);
    });
    return y;
  }
  if (kernel == "field_attention") {
    F32 sc = kw_f32(kw, "s", 3), z = kw_f32(kw, "z", 3);
    const int64_t R = sc.shape(0), t2 = sc.shape(1), t1 = sc.shape(2), n = z.shape(2);
    if (z.shape(0) != R || z.shape(1) != t2) throw py::value_error("s [R, t2, t1] and z [R, t2, n]");
    py::array_t<float> y({R, t1, n});
    std::vector<float> work(size_t(R * t2 * t1));
    float* py_ = y.mutable_data();
    run([&] {
      std::copy(sc.data(), sc.data() + R * t2 * t1, work.data());
      k::field_attention(which, work.data(), z.data(), R, t1, t2, n, py_);
    });
    return y;
  }
  if (kernel == "kron") {
    F32 x = kw_f32(kw, "x", 2), h = kw_f32(kw, "h", 2);
    if (x.shape(0) != h.shape(0)) throw py::value_error("x and h need the same rows");
    const bool with_h = kw.contains("with_h") ? kw["with_h"].cast<bool>() : true;
    const int64_t R = x.shape(0), m = x.shape(1), l = h.shape(1), K = (l + 1) * m + (with_h ? l : 0);
    py::array_t<float> P({R, K});
    float* pp = P.mutable_data();
    run([&] { k::kron_panel(which, x.data(), m, m, h.data(), l, l, R, with_h, pp, K); });
    return P;
  }
  if (kernel == "dwconv" || kernel == "dwconv_mean") {
    F32 x = kw_f32(kw, "x", 2), K = kw_f32(kw, "K", 2);
    const int64_t T = x.shape(0), n = x.shape(1), k = K.shape(0);
    if (K.shape(1) != n || k % 2 == 0) throw py::value_error("K must be [k odd, n]");
    const int64_t L = kw.contains("length") ? kw["length"].cast<int64_t>() : T;
    if (L < 0 || L > T) throw py::value_error("length must be in [0, T]");
    const bool mean = kernel == "dwconv_mean";
    py::array_t<float> y = mean ? py::array_t<float>({n}) : py::array_t<float>({T, n});
    float* py_ = y.mutable_data();
    std::fill(py_, py_ + (mean ? n : T * n), mean ? NAN : 0.0f);  // NaN: every entry must be written
    run([&] {
      if (mean)
        k::dwconv_mean(which, x.data(), L, n, K.data(), k, py_);
      else
        k::dwconv_rows(which, x.data(), L, n, K.data(), k, py_);
    });
    return y;
  }
  if (kernel == "attention") {
    F32 qkv = kw_f32(kw, "qkv", 2);
    const int64_t L = qkv.shape(0), d = qkv.shape(1) / 3;
    const int64_t H = kw.contains("heads") ? kw["heads"].cast<int64_t>() : 1;
    if (d < 1 || qkv.shape(1) != 3 * d || H < 1 || d % H != 0)
      throw py::value_error("qkv must be [L, 3d] with heads dividing d");
    const float scale =
        kw.contains("scale") ? kw["scale"].cast<float>() : 1.0f / std::sqrt(static_cast<float>(d / H));
    py::array_t<float> A({L, d});
    float* pa = A.mutable_data();
    std::vector<float> scratch(size_t(k::attention_scratch_floats(L, d)));
    run([&] { k::attention_rows(which, qkv.data(), 3 * d, L, d, H, scale, pa, d, scratch.data()); });
    return A;
  }
  if (kernel == "kfatt_scores") {
    F32 q = kw_f32(kw, "q", 1), K = kw_f32(kw, "K", 2);
    const int64_t n = K.shape(0), dh = q.shape(0);
    if (K.shape(1) < dh) throw py::value_error("K must be [n, >= len(q)]");
    const float scale = kw.contains("scale") ? kw["scale"].cast<float>() : 1.0f;
    py::array_t<float> out(n);
    float* po = out.mutable_data();
    run([&] { k::kfatt_scores(which, q.data(), K.data(), K.shape(1), n, dh, scale, po); });
    return out;
  }
  if (kernel == "kfatt_wsum") {
    F32 w = kw_f32(kw, "w", 1), V = kw_f32(kw, "V", 2), a0 = kw_f32(kw, "acc", 1);
    const int64_t n = V.shape(0), dh = a0.shape(0);
    if (w.shape(0) != n || V.shape(1) < dh) throw py::value_error("w must be [n], V [n, >= len(acc)]");
    py::array_t<float> acc(dh);
    float* pa = acc.mutable_data();
    run([&] {
      std::copy(a0.data(), a0.data() + dh, pa);
      k::kfatt_wsum(which, w.data(), V.data(), V.shape(1), n, dh, pa);
    });
    return acc;
  }
  if (kernel == "gru") {
    F32 gi = kw_f32(kw, "gi", 2), gh = kw_f32(kw, "gh", 2), st = kw_f32(kw, "state", 2);
    const int64_t R = st.shape(0), h = st.shape(1);
    if (gi.shape(0) != R || gh.shape(0) != R || gi.shape(1) != 3 * h || gh.shape(1) != 3 * h)
      throw py::value_error("gi and gh must be [R, 3h] for state [R, h]");
    F32 att = kw.contains("att") && !kw["att"].is_none() ? kw_f32(kw, "att", 1) : F32();
    if (att.size() && att.shape(0) != R) throw py::value_error("att must be [R]");
    py::array_t<float> y({R, h});
    float* py_ = y.mutable_data();
    run([&] {
      std::copy(st.data(), st.data() + R * h, py_);
      k::gru_gates(which, gi.data(), gh.data(), att.size() ? att.data() : nullptr, R, h, py_);
    });
    return y;
  }
  throw py::value_error(
      "unknown kernel '" + kernel +
      "' (pool, pool_half, pool_int8, layernorm, cross, act, softmax, kron, field_mix, field_attention, "
      "dwconv, dwconv_mean, attention, kfatt_scores, kfatt_wsum, gru)");
}

}  // namespace

PYBIND11_MODULE(_testing, m) {
  m.doc() = "dpn_infer kernel entry points for tests and benchmarks (not part of the API)";
  m.def(
      "probe_fma_gflops",
      [](int threads) {
        py::gil_scoped_release nogil;
        return dpn::diag::probe_fma_gflops(dpn::cpu::selected_isa(), threads);
      },
      py::arg("threads") = 1,
      "Measured fp32 FMA peak (GFLOP/s) of `threads` threads with the selected ISA's vectors.");
  m.def(
      "probe_read_gbps",
      [](int threads, int64_t mbytes) {
        py::gil_scoped_release nogil;
        return dpn::diag::probe_read_gbps(dpn::cpu::selected_isa(), threads, mbytes);
      },
      py::arg("threads") = 1, py::arg("mbytes") = 512,
      "Measured read bandwidth (GB/s) summing a `mbytes` MiB buffer on `threads` threads.");
  m.def("gemm", &test_gemm, py::arg("A"), py::arg("W"), py::arg("bias") = py::none(),
        py::arg("act") = "identity", py::arg("isa") = "ref", py::arg("repeat") = 1,
        py::arg("bf16") = false, py::arg("twin") = false, py::arg("int8") = false,
        "act(A @ W.T + bias) with one ISA's GEMM kernel (bf16: as a bfloat16 weight; int8: as an int8 "
        "weight, quantized per column; twin: the bfloat16 / int8 kernels' reference twin).");
  m.def(
      "int8_gemm_path",
      [](const std::string& isa) { return dpn::kernels::int8_gemm_path(isa_arg(isa)); }, py::arg("isa"),
      "Which int8 GEMM an ISA's table runs: 'avx512vnni' or 'ref'.");
  m.def("gemm_kron", &test_gemm_kron, py::arg("x"), py::arg("h"), py::arg("B"),
        py::arg("bias") = py::none(), py::arg("act") = "identity", py::arg("with_h") = true,
        py::arg("isa") = "ref", py::arg("repeat") = 1, py::arg("bf16") = false, py::arg("twin") = false,
        py::arg("int8") = false,
        "The Kronecker GEMM of a dynamic layer with one ISA (bf16, int8, twin: as gemm).");
  m.def("gemm_collapsed", &test_gemm_collapsed, py::arg("x"), py::arg("h"), py::arg("B"),
        py::arg("isa") = "ref", py::arg("threads") = 1,
        "x @ (A_0 + sum_k h_k A_k) through a ranking request's collapsed weight, with one ISA.");
  m.def("kernel", &test_kernel, py::arg("kernel"), py::arg("isa") = "ref",
        "One row/elementwise kernel (pool, pool_half, pool_int8, layernorm, cross, act, softmax, kron, "
        "field_mix, field_attention, dwconv, dwconv_mean, attention, kfatt_scores, kfatt_wsum, gru) "
        "with one ISA's version; arrays "
        "and options as keywords.");
}
