// pybind11 module dpn_infer._engine: the C++ engine seen from Python.
// The binding turns each field of a batch into a FieldInput, checking what only Python can (dtype,
// number of dimensions, one batch size), with messages that start "field 'NAME': "; everything
// the schema says (widths, max_len, ids, offsets) is checked once, by schema/validate.cpp inside
// predict, after the GIL is released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cerrno>
#include <cmath>
#include <algorithm>
#include <cstring>
#include <string>
#include <unordered_set>
#include <vector>

#include "cpu/cpu_features.h"
#include "dpn/dpn.h"
#include "kernels/act.h"
#include "kernels/field_attn.h"
#include "kernels/field_mix.h"
#include "kernels/attention.h"
#include "kernels/dwconv.h"
#include "kernels/gemm.h"
#include "kernels/kron.h"
#include "kernels/probe.h"
#include "kernels/rows.h"

namespace py = pybind11;

namespace {

struct PyModel {
  std::shared_ptr<const dpn::Model> model;
  std::vector<py::str> keys;  // field names as Python strings, built once for the per-call lookups
};

std::string shape_str(const py::array& a) {
  std::string s = "[";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + "]";
}

std::string field_list(const dpn::Model& m) {
  std::string s;
  for (const auto& f : m.fields()) s += (s.empty() ? "'" : ", '") + f.name + "'";
  return s;
}

constexpr int kInPlace =
    py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_ | py::detail::npy_api::NPY_ARRAY_ALIGNED_;

py::array_t<float> predict(const PyModel& self, const py::dict& batch, int threads, bool logits,
                           bool allow_nan) {
  const dpn::Model& m = *self.model;
  if (threads < 1) throw py::value_error("threads must be >= 1");
  const auto& fields = m.fields();
  // Every array predict reads, referenced until it returns: the GIL is released while the engine
  // reads them, and another thread may drop the batch's own references meanwhile (dict.clear()).
  std::vector<py::array> keep;
  keep.reserve(2 * fields.size());
  std::vector<dpn::FieldInput> inputs(fields.size());
  int64_t B = -1;
  std::string b_field;
  // Every field must give the batch size the first one gave.
  auto same_rows = [&](const std::string& name, int64_t rows) {
    if (B < 0) {
      B = rows;
      b_field = name;
    } else if (rows != B) {
      throw dpn::InputError(name, "has " + std::to_string(rows) + " rows, but field '" + b_field + "' has " +
                                      std::to_string(B) + " (every field needs the same batch size)");
    }
  };
  // This runs on every call: no per-call string building unless something is wrong.
  for (size_t i = 0; i < fields.size(); ++i) {
    const dpn::FieldInfo& f = fields[i];
    PyObject* found = PyDict_GetItemWithError(batch.ptr(), self.keys[i].ptr());  // borrowed
    if (!found && PyErr_Occurred()) throw py::error_already_set();
    if (!found)
      throw dpn::InputError(f.name, "missing from the batch (the model's fields are " + field_list(m) + ")");
    py::object obj = py::reinterpret_borrow<py::object>(found);
    if (f.kind == dpn::FieldKind::Sequence && PyTuple_Check(obj.ptr())) {
      // Ragged (values, offsets): row b's ids are values[offsets[b]:offsets[b+1]].
      py::tuple t = py::reinterpret_borrow<py::tuple>(obj);
      if (t.size() != 2)
        throw dpn::InputError(f.name, "a ragged sequence is a tuple (values, offsets), got a tuple of " +
                                          std::to_string(t.size()));
      py::array parts[2];
      const char* what[2] = {"values", "offsets"};
      for (int k = 0; k < 2; ++k) {
        parts[k] = py::array::ensure(t[size_t(k)]);
        if (!parts[k]) {
          PyErr_Clear();
          throw dpn::InputError(f.name, std::string("ragged ") + what[k] + " must be an array");
        }
        if (!py::isinstance<py::array_t<int64_t>>(parts[k]) || parts[k].ndim() != 1)
          throw dpn::InputError(f.name, std::string("ragged ") + what[k] + " must be a 1-d int64 array, got " +
                                            std::string(py::str(parts[k].dtype())) + " " + shape_str(parts[k]));
      }
      if (parts[1].shape(0) < 1)
        throw dpn::InputError(f.name, "ragged offsets need B + 1 entries (at least 1)");
      auto v = py::array_t<int64_t, py::array::c_style>::ensure(parts[0]);
      auto o = py::array_t<int64_t, py::array::c_style>::ensure(parts[1]);
      if (!v || !o) throw dpn::InputError(f.name, "could not make a contiguous copy of the array (out of memory?)");
      const int64_t rows = o.shape(0) - 1;
      same_rows(f.name, rows);
      dpn::FieldInput& in = inputs[i];
      in.rows = rows;
      in.cols = v.shape(0);
      in.ids = v.data();
      in.offsets = o.data();
      keep.push_back(std::move(v));
      keep.push_back(std::move(o));
      continue;
    }
    py::array arr;
    if (py::isinstance<py::array>(obj)) {
      arr = py::reinterpret_borrow<py::array>(obj);
    } else {  // lists, scalars, array-likes: as np.asarray would, never casting the dtype
      arr = py::array::ensure(obj);
      if (!arr) {
        PyErr_Clear();
        throw dpn::InputError(f.name, std::string("expected a numpy array, got ") +
                                          std::string(py::str(py::type::of(obj).attr("__name__"))));
      }
    }
    const bool ids = f.kind != dpn::FieldKind::Dense;
    if (ids && !py::isinstance<py::array_t<int64_t>>(arr))
      throw dpn::InputError(f.name, "expected int64 ids, got " + std::string(py::str(arr.dtype())));
    if (!ids && !py::isinstance<py::array_t<float>>(arr))
      throw dpn::InputError(f.name, "expected float32 values, got " + std::string(py::str(arr.dtype())));
    int64_t rows = 0, cols = 0;
    switch (f.kind) {
      case dpn::FieldKind::Sparse:
        if (arr.ndim() != 1)
          throw dpn::InputError(f.name, "expected shape [B] (one id per row), got " + shape_str(arr));
        rows = arr.shape(0);
        cols = 1;
        break;
      case dpn::FieldKind::MultiHot:
        if (arr.ndim() != 2)
          throw dpn::InputError(f.name, "expected shape [B, T] (ids padded with -1), got " + shape_str(arr));
        rows = arr.shape(0);
        cols = arr.shape(1);  // max_len is checked with the rest of the schema (schema/validate.cpp)
        break;
      case dpn::FieldKind::Sequence:  // T > max_len: the engine refuses or truncates, as the schema says
        if (arr.ndim() != 2)
          throw dpn::InputError(f.name, "expected shape [B, T] (ids padded with -1), got " + shape_str(arr));
        rows = arr.shape(0);
        cols = arr.shape(1);
        break;
      case dpn::FieldKind::Dense:
        if (arr.ndim() == 1 && f.dim == 1) {
          rows = arr.shape(0);
        } else if (arr.ndim() == 2 && arr.shape(1) == f.dim) {
          rows = arr.shape(0);
        } else {
          throw dpn::InputError(f.name, std::string("expected shape ") +
                                            (f.dim == 1 ? "[B] or [B, 1]" : "[B, " + std::to_string(f.dim) + "]") +
                                            ", got " + shape_str(arr));
        }
        cols = f.dim;
        break;
    }
    same_rows(f.name, rows);
    dpn::FieldInput& in = inputs[i];
    in.rows = rows;
    in.cols = cols;
    // Fast path: the dtype matched above, so an aligned C-contiguous array is read in place
    // (ensure() costs ~0.2 µs a field, which adds up at batch 1 with many fields); it is kept
    // referenced, not borrowed, for the GIL-free part.
    const int flags = py::detail::array_proxy(arr.ptr())->flags;
    if ((flags & kInPlace) == kInPlace) {
      if (ids) in.ids = static_cast<const int64_t*>(arr.data());
      else in.values = static_cast<const float*>(arr.data());
      keep.push_back(std::move(arr));
      continue;
    }
    if (ids) {
      auto c = py::array_t<int64_t, py::array::c_style>::ensure(arr);
      if (!c) throw dpn::InputError(f.name, "could not make a contiguous copy of the array (out of memory?)");
      in.ids = c.data();
      keep.push_back(std::move(c));
    } else {
      auto c = py::array_t<float, py::array::c_style>::ensure(arr);
      if (!c) throw dpn::InputError(f.name, "could not make a contiguous copy of the array (out of memory?)");
      in.values = c.data();
      keep.push_back(std::move(c));
    }
  }
  // Every field was found, so the batch has extra keys exactly when it is larger.
  if (batch.size() != fields.size()) {
    std::unordered_set<std::string> names;
    for (const auto& f : fields) names.insert(f.name);
    for (auto item : batch) {
      const std::string key = py::str(item.first);
      if (!names.count(key))
        throw dpn::InputError(key, "is not a field of this model (its fields are " + field_list(m) + ")");
    }
  }
  if (B < 0) B = 0;
  py::array_t<float> out(static_cast<py::ssize_t>(B));
  float* po = out.mutable_data();
  dpn::PredictOptions opt;
  opt.threads = threads;
  opt.logits = logits;
  opt.allow_nan = allow_nan;
  {
    py::gil_scoped_release nogil;
    m.predict(inputs, B, po, opt);
  }
  return out;
}

py::dict cpu_info() {
  const dpn::cpu::Features& f = dpn::cpu::features();
  const dpn::cpu::Selection& s = dpn::cpu::selection();
  py::dict d;
  d["vendor"] = f.vendor;
  d["brand"] = f.brand;
  d["avx2"] = f.avx2;
  d["fma"] = f.fma;
  d["avx512f"] = f.avx512f;
  d["avx512bw"] = f.avx512bw;
  d["avx512vl"] = f.avx512vl;
  d["avx512dq"] = f.avx512dq;
  d["avx512_bf16"] = f.avx512_bf16;
  d["avx512_vnni"] = f.avx512_vnni;
  py::list avail;
  for (auto isa : {dpn::cpu::Isa::Avx512, dpn::cpu::Isa::Avx2, dpn::cpu::Isa::Ref})
    if (dpn::cpu::available(isa)) avail.append(dpn::cpu::isa_name(isa));
  d["available"] = avail;
  d["selected"] = dpn::cpu::isa_name(s.isa);
  d["override"] = s.overridden ? py::object(py::str(s.override_value)) : py::object(py::none());
  d["note"] = s.note;
  return d;
}

dpn::kernels::Act parse_act(const std::string& a) {
  if (a == "identity" || a == "none") return dpn::kernels::Act::Identity;
  if (a == "relu") return dpn::kernels::Act::Relu;
  if (a == "sigmoid") return dpn::kernels::Act::Sigmoid;
  if (a == "tanh") return dpn::kernels::Act::Tanh;
  throw py::value_error("unknown act '" + a + "'");
}

// Test-only: C = act(A · Wᵀ + bias) with one ISA's kernel (W in torch layout [N, K]); `repeat`
// runs the GEMM that many times (for timing scripts). The weight is packed for that ISA.
py::array_t<float> test_gemm(py::array_t<float, py::array::c_style | py::array::forcecast> A,
                             py::array_t<float, py::array::c_style | py::array::forcecast> W,
                             py::object bias, const std::string& act, const std::string& isa,
                             int repeat) {
  if (A.ndim() != 2 || W.ndim() != 2 || A.shape(1) != W.shape(1))
    throw py::value_error("expected A [M, K] and W [N, K]");
  dpn::cpu::Isa which;
  if (!dpn::cpu::parse_isa(isa, &which)) throw py::value_error("unknown isa '" + isa + "'");
  if (!dpn::cpu::available(which)) throw py::value_error("isa '" + isa + "' not available here");
  const int64_t M = A.shape(0), K = A.shape(1), N = W.shape(0);
  py::array_t<float, py::array::c_style | py::array::forcecast> b;
  if (!bias.is_none()) {
    b = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(bias);
    if (!b || b.ndim() != 1 || b.shape(0) != N) throw py::value_error("bias must be [N]");
  }
  const dpn::kernels::Act a = parse_act(act);
  dpn::kernels::PackedMatrix pm;
  pm.pack(W.data(), K, N, 1, K, which);
  py::array_t<float> C({M, N});
  float* pc = C.mutable_data();
  const float* pa = A.data();
  const float* pb = bias.is_none() ? nullptr : b.data();
  {
    py::gil_scoped_release nogil;
    for (int r = 0; r < std::max(1, repeat); ++r)
      dpn::kernels::gemm(pa, K, M, pm, pb, a, pc, N);
  }
  return C;
}

// Test-only: the Kronecker GEMM of a dynamic layer with one ISA's path (AVX-512 builds the panel
// block by block inside its GEMM): act([x, h_1·x, …, h_l·x, (h)] · B + bias), B row-major [K, N].
py::array_t<float> test_gemm_kron(py::array_t<float, py::array::c_style | py::array::forcecast> x,
                                  py::array_t<float, py::array::c_style | py::array::forcecast> h,
                                  py::array_t<float, py::array::c_style | py::array::forcecast> B,
                                  py::object bias, const std::string& act, bool with_h,
                                  const std::string& isa, int repeat) {
  if (x.ndim() != 2 || h.ndim() != 2 || B.ndim() != 2 || x.shape(0) != h.shape(0))
    throw py::value_error("expected x [R, m], h [R, l], B [K, N]");
  const int64_t R = x.shape(0), m = x.shape(1), l = h.shape(1), K = B.shape(0), N = B.shape(1);
  if (K != (l + 1) * m + (with_h ? l : 0)) throw py::value_error("B must have (l+1)*m (+l) rows");
  dpn::cpu::Isa which;
  if (!dpn::cpu::parse_isa(isa, &which)) throw py::value_error("unknown isa '" + isa + "'");
  if (!dpn::cpu::available(which)) throw py::value_error("isa '" + isa + "' not available here");
  py::array_t<float, py::array::c_style | py::array::forcecast> b;
  if (!bias.is_none()) {
    b = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(bias);
    if (!b || b.ndim() != 1 || b.shape(0) != N) throw py::value_error("bias must be [N]");
  }
  dpn::kernels::PackedMatrix pm;
  pm.pack(B.data(), K, N, N, 1, which);
  std::vector<float> panel(size_t(std::max<int64_t>(1, R * K)));
  py::array_t<float> C({R, N});
  const float *px = x.data(), *ph = h.data(), *pb = bias.is_none() ? nullptr : b.data();
  float* pc = C.mutable_data();
  const dpn::kernels::Act a = parse_act(act);
  {
    py::gil_scoped_release nogil;
    for (int r = 0; r < std::max(1, repeat); ++r)  // repeat > 1: timing, packing excluded
      dpn::kernels::gemm_kron(px, m, m, ph, l, l, with_h, R, pm, pb, a, pc, N, panel.data());
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

// Test-only: one row/elementwise kernel with one ISA's version (the `repeat` keyword runs it that
// many times, for timing scripts). Keywords per kernel (returns a new array):
//   pool:      table [V, dim], rows int64 [R, n], scale=1.0   -> [R, dim] (one pool_rows per row)
//   layernorm: x [R, d], w [d], b [d], eps=1e-5               -> [R, d]
//   cross:     x0 [R, d], xl [R, d], w [d], b [d]             -> [R, d]
//   act:       x [n], act="relu"                              -> [n]
//   softmax:   x [R, C]                                       -> [R, C]
//   kron:      x [R, m], h [R, l], with_h=True                -> [R, (l+1)·m (+ l)]
//   dwconv:    x [T, n], K [k, n], length=T                   -> [T, n] (rows >= length left 0)
//   attention: qkv [L, 3d], heads=1, scale=1/sqrt(d/heads)    -> [L, d]
py::array_t<float> test_rows(const std::string& kernel, const std::string& isa,
                             const py::kwargs& kw) {
  namespace k = dpn::kernels;
  dpn::cpu::Isa which;
  if (!dpn::cpu::parse_isa(isa, &which)) throw py::value_error("unknown isa '" + isa + "'");
  if (!dpn::cpu::available(which)) throw py::value_error("isa '" + isa + "' not available here");
  const int repeat = std::max(1, kw.contains("repeat") ? kw["repeat"].cast<int>() : 1);
  auto run = [&](auto&& fn) {
    py::gil_scoped_release nogil;
    for (int r = 0; r < repeat; ++r) fn();
  };
  if (kernel == "pool") {
    F32 t = kw_f32(kw, "table", 2);
    auto rows = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(kw["rows"]);
    if (!rows || rows.ndim() != 2) throw py::value_error("'rows' must be a 2-d int64 array");
    const int64_t V = t.shape(0), dim = t.shape(1), R = rows.shape(0), n = rows.shape(1);
    for (int64_t i = 0; i < R * n; ++i)
      if (rows.data()[i] < 0 || rows.data()[i] >= V) throw py::value_error("row index out of range");
    const float scale = kw.contains("scale") ? kw["scale"].cast<float>() : 1.0f;
    py::array_t<float> out({R, dim});
    float* po = out.mutable_data();
    const float* pt = t.data();
    const int64_t* pr = rows.data();
    run([&] {
      for (int64_t i = 0; i < R; ++i) k::pool_rows(which, pt, dim, pr + i * n, n, scale, po + i * dim);
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
    const k::Act a = act ? parse_act(kw.contains("act") ? kw["act"].cast<std::string>() : "relu")
                         : k::Act::Identity;
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
  if (kernel == "dwconv") {
    F32 x = kw_f32(kw, "x", 2), K = kw_f32(kw, "K", 2);
    const int64_t T = x.shape(0), n = x.shape(1), k = K.shape(0);
    if (K.shape(1) != n || k % 2 == 0) throw py::value_error("K must be [k odd, n]");
    const int64_t L = kw.contains("length") ? kw["length"].cast<int64_t>() : T;
    if (L < 0 || L > T) throw py::value_error("length must be in [0, T]");
    py::array_t<float> y({T, n});
    float* py_ = y.mutable_data();
    std::fill(py_, py_ + T * n, 0.0f);
    run([&] { k::dwconv_rows(which, x.data(), L, n, K.data(), k, py_); });
    return y;
  }
  if (kernel == "attention") {
    F32 qkv = kw_f32(kw, "qkv", 2);
    const int64_t L = qkv.shape(0), d = qkv.shape(1) / 3;
    const int64_t H = kw.contains("heads") ? kw["heads"].cast<int64_t>() : 1;
    if (d < 1 || qkv.shape(1) != 3 * d || H < 1 || d % H != 0)
      throw py::value_error("qkv must be [L, 3d] with heads dividing d");
    const float scale = kw.contains("scale") ? kw["scale"].cast<float>()
                                             : 1.0f / std::sqrt(static_cast<float>(d / H));
    py::array_t<float> A({L, d});
    float* pa = A.mutable_data();
    std::vector<float> scratch(size_t(k::attention_scratch_floats(L, d)));
    run([&] { k::attention_rows(which, qkv.data(), 3 * d, L, d, H, scale, pa, d, scratch.data()); });
    return A;
  }
  throw py::value_error("unknown kernel '" + kernel +
                        "' (pool, layernorm, cross, act, softmax, kron, dwconv, attention)");
}

// path: bytes (os.fsencode: any file name, UTF-8 or not) or str.
PyModel load(const std::string& path, bool copy, uint64_t max_alloc_bytes) {
  dpn::LoadOptions o;
  o.mode = copy ? dpn::LoadMode::Copy : dpn::LoadMode::Map;
  o.max_alloc_bytes = max_alloc_bytes;
  std::shared_ptr<const dpn::Model> m;
  {
    py::gil_scoped_release nogil;  // a large file takes a while; other Python threads go on
    m = dpn::Model::load(path, o);
  }
  PyModel pm{std::move(m), {}};
  for (const auto& f : pm.model->fields()) pm.keys.emplace_back(f.name);
  return pm;
}

// Messages may quote bytes from a file; decode with "replace" so raising never fails.
void set(PyObject* type, const char* msg) {
  PyObject* s = PyUnicode_DecodeUTF8(msg, static_cast<Py_ssize_t>(std::strlen(msg)), "replace");
  if (!s) return;
  PyErr_SetObject(type, s);
  Py_DECREF(s);
}

}  // namespace

PYBIND11_MODULE(_engine, m) {
  m.doc() = "dpn_infer C++ inference engine";

  // Exception types live as long as the process (never destroyed, so no teardown-order issues).
  static PyObject* format_error =
      PyErr_NewException("dpn_infer._engine.ModelFormatError", PyExc_ValueError, nullptr);
  static PyObject* input_error =
      PyErr_NewException("dpn_infer._engine.InputError", PyExc_ValueError, nullptr);
  static PyObject* nan_error =
      PyErr_NewException("dpn_infer._engine.NonFiniteScoreError", input_error, nullptr);
  m.attr("ModelFormatError") = py::handle(format_error);
  m.attr("InputError") = py::handle(input_error);
  m.attr("NonFiniteScoreError") = py::handle(nan_error);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const dpn::FormatError& e) {
      set(format_error, e.what());
    } catch (const dpn::NonFiniteScoreError& e) {
      set(nan_error, e.what());
      // .rows: the first rows at fault; .num_rows: how many in all.
      PyObject *type, *value, *tb;
      PyErr_Fetch(&type, &value, &tb);
      PyErr_NormalizeException(&type, &value, &tb);
      if (value) {
        py::handle v(value);
        v.attr("rows") = py::cast(e.rows());
        v.attr("num_rows") = py::cast(e.num_rows());
      }
      PyErr_Restore(type, value, tb);
    } catch (const dpn::InputError& e) {
      set(input_error, e.what());
    } catch (const dpn::IoError& e) {
      // FileNotFoundError / PermissionError / ... chosen by errno, with the path attached (decoded
      // as os.fsdecode does, so a non-UTF-8 name survives). The reason is the message's tail
      // ("cannot open model file 'P': REASON").
      const std::string what = e.what();
      const size_t at = what.rfind("': ");
      const std::string reason = at == std::string::npos ? what : what.substr(at + 3);
      PyObject* path = PyUnicode_DecodeFSDefaultAndSize(e.path().data(), Py_ssize_t(e.path().size()));
      if (!path) return;
      py::object err = py::reinterpret_borrow<py::object>(PyExc_OSError)(
          e.errno_value(), reason, py::reinterpret_steal<py::object>(path));
      PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(err.ptr())), err.ptr());
    } catch (const dpn::Error& e) {
      set(PyExc_ValueError, e.what());
    }
  });

  m.def("cpu_info", &cpu_info,
        "CPU features, the kernel ISA selected for this process (DPN_ISA override) and why.");
  m.def(
      "probe_fma_gflops",
      [](int threads) {
        py::gil_scoped_release nogil;
        return dpn::kernels::probe_fma_gflops(dpn::cpu::selected_isa(), threads);
      },
      py::arg("threads") = 1,
      "Measured fp32 FMA peak (GFLOP/s) of `threads` threads with the selected ISA's vectors.");
  m.def(
      "probe_read_gbps",
      [](int threads, int64_t mbytes) {
        py::gil_scoped_release nogil;
        return dpn::kernels::probe_read_gbps(dpn::cpu::selected_isa(), threads, mbytes);
      },
      py::arg("threads") = 1, py::arg("mbytes") = 512,
      "Measured read bandwidth (GB/s) summing a `mbytes` MiB buffer on `threads` threads.");
  m.def("_test_gemm", &test_gemm, py::arg("A"), py::arg("W"), py::arg("bias") = py::none(),
        py::arg("act") = "identity", py::arg("isa") = "ref", py::arg("repeat") = 1,
        "Test-only: act(A @ W.T + bias) with one ISA's GEMM kernel.");

  m.def("_test_gemm_kron", &test_gemm_kron, py::arg("x"), py::arg("h"), py::arg("B"),
        py::arg("bias") = py::none(), py::arg("act") = "identity", py::arg("with_h") = true,
        py::arg("isa") = "ref", py::arg("repeat") = 1,
        "Test-only: the Kronecker GEMM of a dynamic layer with one ISA.");

  m.def("_test_rows", &test_rows, py::arg("kernel"), py::arg("isa") = "ref",
        "Test-only: one row/elementwise kernel (pool, layernorm, cross, act, softmax, kron) with "
        "one ISA's version; arrays and options as keywords.");

  py::class_<PyModel>(m, "Model")
      .def_static("load", &load, py::arg("path"), py::arg("copy") = false, py::arg("max_alloc_bytes") = 0,
                  "Load and validate a model.bin file (path as bytes or str).")
      .def("predict", &predict, py::arg("batch"), py::arg("threads") = 1, py::arg("logits") = false,
           py::arg("allow_nan") = false,
           "Predict for a dict of numpy arrays; float32 [B] probabilities (or logits).")
      .def_property_readonly("metadata_json",
                             [](const PyModel& s) { return s.model->metadata_json(); })
      .def_property_readonly("num_fields", [](const PyModel& s) { return s.model->num_fields(); });
}
