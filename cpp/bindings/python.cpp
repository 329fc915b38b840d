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
#include "kernels/blocking.h"
#include "kernels/gemm.h"
#include "kernels/isa_kernels.h"

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

// One field's array (or ragged tuple) as a FieldInput; returns its rows. The arrays it reads are
// appended to `keep`.
int64_t to_input(const dpn::FieldInfo& f, PyObject* found, std::vector<py::array>& keep,
                 dpn::FieldInput& in) {
  py::object obj = py::reinterpret_borrow<py::object>(found);
  if ((f.kind == dpn::FieldKind::Sequence || f.kind == dpn::FieldKind::Timestamps) &&
      PyTuple_Check(obj.ptr())) {
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
        throw dpn::InputError(f.name,
                              std::string("ragged ") + what[k] + " must be a 1-d int64 array, got " +
                                  std::string(py::str(parts[k].dtype())) + " " + shape_str(parts[k]));
    }
    if (parts[1].shape(0) < 1)
      throw dpn::InputError(f.name, "ragged offsets need B + 1 entries (at least 1)");
    auto v = py::array_t<int64_t, py::array::c_style>::ensure(parts[0]);
    auto o = py::array_t<int64_t, py::array::c_style>::ensure(parts[1]);
    if (!v || !o)
      throw dpn::InputError(f.name, "could not make a contiguous copy of the array (out of memory?)");
    const int64_t rows = o.shape(0) - 1;
    in.rows = rows;
    in.cols = v.shape(0);
    in.ids = v.data();
    in.offsets = o.data();
    keep.push_back(std::move(v));
    keep.push_back(std::move(o));
    return rows;
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
        throw dpn::InputError(f.name,
                              "expected shape [B, T] (ids padded with -1), got " + shape_str(arr));
      rows = arr.shape(0);
      cols = arr.shape(1);  // max_len is checked with the rest of the schema (schema/validate.cpp)
      break;
    case dpn::FieldKind::Timestamps:  // [B, T] like its sequence ([B, S, L]: dpn_infer/_sessions.py)
      if (arr.ndim() != 2)
        throw dpn::InputError(f.name,
                              "expected shape [B, T] (one int64 timestamp per id of its "
                              "sequence field), got " +
                                  shape_str(arr));
      rows = arr.shape(0);
      cols = arr.shape(1);
      break;
    case dpn::FieldKind::Sequence:  // T > max_len: the engine refuses or truncates, as the schema says
      if (arr.ndim() != 2)
        throw dpn::InputError(f.name,
                              "expected shape [B, T] (ids padded with -1), got " + shape_str(arr));
      rows = arr.shape(0);
      cols = arr.shape(1);
      break;
    case dpn::FieldKind::Dense:
      if (arr.ndim() == 1 && f.dim == 1) {
        rows = arr.shape(0);
      } else if (arr.ndim() == 2 && arr.shape(1) == f.dim) {
        rows = arr.shape(0);
      } else {
        throw dpn::InputError(f.name,
                              std::string("expected shape ") +
                                  (f.dim == 1 ? "[B] or [B, 1]" : "[B, " + std::to_string(f.dim) + "]") +
                                  ", got " + shape_str(arr));
      }
      cols = f.dim;
      break;
  }
  in.rows = rows;
  in.cols = cols;
  // Fast path: the dtype matched above, so an aligned C-contiguous array is read in place
  // (ensure() costs ~0.2 µs a field, which adds up at batch 1 with many fields); it is kept
  // referenced, not borrowed, for the GIL-free part.
  const int flags = py::detail::array_proxy(arr.ptr())->flags;
  if ((flags & kInPlace) == kInPlace) {
    if (ids)
      in.ids = static_cast<const int64_t*>(arr.data());
    else
      in.values = static_cast<const float*>(arr.data());
    keep.push_back(std::move(arr));
    return rows;
  }
  if (ids) {
    auto c = py::array_t<int64_t, py::array::c_style>::ensure(arr);
    if (!c)
      throw dpn::InputError(f.name, "could not make a contiguous copy of the array (out of memory?)");
    in.ids = c.data();
    keep.push_back(std::move(c));
  } else {
    auto c = py::array_t<float, py::array::c_style>::ensure(arr);
    if (!c)
      throw dpn::InputError(f.name, "could not make a contiguous copy of the array (out of memory?)");
    in.values = c.data();
    keep.push_back(std::move(c));
  }
  return rows;
}

// The names of `d`'s keys that are not fields of the model, checked only when d has more keys
// than the fields it gives (so a good call builds no strings).
void no_unknown_keys(const dpn::Model& m, const py::dict& d) {
  std::unordered_set<std::string> names;
  for (const auto& f : m.fields()) names.insert(f.name);
  for (auto item : d) {
    const std::string key = py::str(item.first);
    if (!names.count(key))
      throw dpn::InputError(key, "is not a field of this model (its fields are " + field_list(m) + ")");
  }
}

// shared: None or a dict of the fields given once per user; groups: None or int64 [U + 1].
py::array_t<float> predict(const PyModel& self, const py::dict& batch, int threads, bool logits,
                           bool allow_nan, const py::object& shared_obj, const py::object& groups_obj) {
  const dpn::Model& m = *self.model;
  if (threads < 1) throw py::value_error("threads must be >= 1");
  const auto& fields = m.fields();
  const bool request = !shared_obj.is_none() || !groups_obj.is_none();
  py::dict shared;
  if (!shared_obj.is_none()) {
    if (!PyDict_Check(shared_obj.ptr()))
      throw py::type_error("shared must be a dict field name -> array (one row per user)");
    shared = py::reinterpret_borrow<py::dict>(shared_obj);
  }
  // Every array predict reads, referenced until it returns: the GIL is released while the engine
  // reads them, and another thread may drop the batch's own references meanwhile (dict.clear()).
  std::vector<py::array> keep;
  keep.reserve(2 * fields.size() + 1);
  std::vector<dpn::FieldInput> inputs(fields.size());
  dpn::SharedInputs sh;
  int64_t B = -1;
  std::string b_field;
  // Every field must give the batch size the first one gave.
  auto same_rows = [&](const std::string& name, int64_t rows) {
    if (B < 0) {
      B = rows;
      b_field = name;
    } else if (rows != B) {
      throw dpn::InputError(name, "has " + std::to_string(rows) + " rows, but field '" + b_field +
                                      "' has " + std::to_string(B) +
                                      " (every field needs the same batch size)");
    }
  };
  // This runs on every call: no per-call string building unless something is wrong.
  size_t in_batch = 0;
  for (size_t i = 0; i < fields.size(); ++i) {
    const dpn::FieldInfo& f = fields[i];
    PyObject* found = PyDict_GetItemWithError(batch.ptr(), self.keys[i].ptr());  // borrowed
    if (!found && PyErr_Occurred()) throw py::error_already_set();
    PyObject* once = nullptr;
    if (request) {
      once = PyDict_GetItemWithError(shared.ptr(), self.keys[i].ptr());
      if (!once && PyErr_Occurred()) throw py::error_already_set();
    }
    if (found && once)
      throw dpn::InputError(f.name, "is given both in the batch and in shared; pass it one way");
    if (once) {
      dpn::SharedInput s;
      s.field = static_cast<int64_t>(i);
      to_input(f, once, keep, s.input);  // its rows are checked against the users by predict
      sh.fields.push_back(s);
      continue;
    }
    if (!found)
      throw dpn::InputError(f.name, std::string("missing from the batch") +
                                        (request ? " and from shared" : "") +
                                        " (the model's fields are " + field_list(m) + ")");
    ++in_batch;
    same_rows(f.name, to_input(f, found, keep, inputs[i]));
  }
  // Every field was found, so a dict has extra keys exactly when it is larger.
  if (size_t(batch.size()) != in_batch) no_unknown_keys(m, batch);
  if (size_t(shared.size()) != sh.fields.size()) no_unknown_keys(m, shared);
  if (!groups_obj.is_none()) {
    py::array g = py::array::ensure(groups_obj);
    if (!g) PyErr_Clear();
    if (!g || !py::isinstance<py::array_t<int64_t>>(g) || g.ndim() != 1 || g.shape(0) < 1)
      throw dpn::RequestError("request: groups must be a 1-d int64 array of users + 1 offsets");
    auto gc = py::array_t<int64_t, py::array::c_style>::ensure(g);
    if (!gc) throw dpn::RequestError("request: could not make a contiguous copy of groups");
    sh.groups = gc.data();
    sh.users = gc.shape(0) - 1;
    if (in_batch == 0) {  // every field shared: the groups give the rows (checked before sizing)
      for (int64_t u = 0; u < sh.users; ++u)
        if (sh.groups[0] != 0 || sh.groups[u + 1] < sh.groups[u])
          throw dpn::RequestError("request: groups must be non-decreasing offsets starting at 0");
      B = sh.groups[sh.users];
    }
    keep.push_back(std::move(gc));
  } else if (in_batch == 0 && !sh.fields.empty()) {
    B = 1;  // every field shared by one user, who owns the one row it makes
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
    if (request)
      m.predict(inputs, B, sh, po, opt);
    else
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
  d["f16c"] = f.f16c;
  d["avx512f"] = f.avx512f;
  d["avx512bw"] = f.avx512bw;
  d["avx512vl"] = f.avx512vl;
  d["avx512dq"] = f.avx512dq;
  d["avx512_bf16"] = f.avx512_bf16;
  d["avx512_vnni"] = f.avx512_vnni;
  d["amx_bf16"] = f.amx_bf16;
  d["amx_int8"] = f.amx_int8;
  d["l1d_bytes"] = f.l1d_bytes;
  d["l2_bytes"] = f.l2_bytes;
  py::list avail;
  for (auto isa : {dpn::cpu::Isa::Avx512Amx, dpn::cpu::Isa::Avx512Bf16, dpn::cpu::Isa::Avx512,
                   dpn::cpu::Isa::Avx2, dpn::cpu::Isa::Ref})
    if (dpn::cpu::available(isa)) avail.append(dpn::cpu::isa_name(isa));
  d["available"] = avail;
  d["selected"] = dpn::cpu::isa_name(s.isa);
  d["override"] = s.overridden ? py::object(py::str(s.override_value)) : py::object(py::none());
  d["note"] = s.note;
  // Which code runs a reduced-precision model.bin (docs/format.md §3) with the selected ISA.
  const std::string isa = dpn::cpu::isa_name(s.isa);
  py::dict rp;
  rp["embeddings"] = "float16/bfloat16 rows read in place, widened to float32 as gathered (" + isa + ")";
  rp["weights"] =
      s.isa == dpn::cpu::Isa::Avx512Amx
          ? "bfloat16 weights of linear and dylinear packed as bfloat16 pairs: AMX-BF16 tile products "
            "(tdpbf16ps, 16x16 float32 tiles) of bfloat16-rounded inputs, float32 accumulation (" +
                isa + "); other ops' bfloat16 weights widened to float32 at load"
      : dpn::kernels::isa_kernels(s.isa).gemm_bf16
          ? "bfloat16 weights of linear and dylinear packed as bfloat16 pairs: AVX512_BF16 dot products "
            "(vdpbf16ps) of bfloat16-rounded inputs, float32 accumulation (" +
                isa +
                "); other ops' "
                "bfloat16 weights widened to float32 at load"
          : "bfloat16 weights widened to float32 at load; linear and dylinear round their GEMM inputs "
            "to bfloat16 (the arithmetic of the AVX512_BF16 path), float32 kernels (" +
                isa + ")";
  // int8 (opset 4, §3.2): tables dequantized per row as gathered; weights by the int8 GEMMs with
  // int8 arithmetic, else dequantized once at load.
  const std::string i8 = dpn::kernels::int8_gemm_path(s.isa);
  rp["int8"] = "int8 rows dequantized (scale x q) as gathered (" + isa +
               "); int8 weights of linear and dylinear with int8 arithmetic: int8 GEMMs, left operand "
               "quantized per row, exact int32 sums (" +
               (i8 == "ref"         ? std::string("reference C++ int8 kernels, no AVX512_VNNI")
                : i8 == "avx512amx" ? std::string("AMX-INT8 tdpbusd tiles; AVX512_VNNI below 16 rows")
                                    : std::string("AVX512_VNNI vpdpbusd")) +
               "); otherwise dequantized to float32 at load, float32 kernels";
  rp["int8_gemm"] = i8;
  d["reduced_precision"] = rp;
  // The GEMM block sizes this process uses (kernels/blocking.h): from CPUID, defaults, or
  // DPN_GEMM_BLOCKS.
  py::dict gb;
  const std::pair<const char*, dpn::kernels::BlockFamily> fams[] = {
      {"fp32_avx512", dpn::kernels::BlockFamily::F32Avx512},
      {"fp32_avx2", dpn::kernels::BlockFamily::F32Avx2},
      {"bf16_avx512", dpn::kernels::BlockFamily::Bf16Avx512}};
  for (const auto& [name, fam] : fams) {
    const dpn::kernels::GemmBlocks& b = dpn::kernels::gemm_blocks(fam);
    py::dict e;
    e["kc"] = b.kc;
    e["mc"] = b.mc;
    e["source"] = b.source;
    gb[name] = e;
  }
  d["gemm_blocks"] = gb;
  return d;
}

PyModel wrap(std::shared_ptr<const dpn::Model> m) {
  PyModel pm{std::move(m), {}};
  for (const auto& f : pm.model->fields()) pm.keys.emplace_back(f.name);
  return pm;
}

// bf16_gemm / int8_gemm: None (as the file records), True or False.
template <class E>
E gemm_choice(const py::object& v) {
  if (v.is_none()) return E::Recorded;
  return v.cast<bool>() ? E::On : E::Off;
}

// path: bytes (os.fsencode: any file name, UTF-8 or not) or str.
PyModel load(const std::string& path, bool copy, uint64_t max_alloc_bytes, const py::object& bf16_gemm,
             const py::object& int8_gemm) {
  dpn::LoadOptions o;
  o.mode = copy ? dpn::LoadMode::Copy : dpn::LoadMode::Map;
  o.max_alloc_bytes = max_alloc_bytes;
  o.bf16_gemm = gemm_choice<dpn::Bf16Gemm>(bf16_gemm);
  o.int8_gemm = gemm_choice<dpn::Int8Gemm>(int8_gemm);
  std::shared_ptr<const dpn::Model> m;
  {
    py::gil_scoped_release nogil;  // a large file takes a while; other Python threads go on
    m = dpn::Model::load(path, o);
  }
  return wrap(std::move(m));
}

// buffer: any C-contiguous buffer (bytes, bytearray, memoryview, numpy array) holding a model file.
// It is read in place by the engine's one copy (BufferMode::Copy), and held until load returns, so
// a bytearray cannot be resized meanwhile (BufferError) while the GIL is released.
PyModel load_memory(const py::object& buffer, uint64_t max_alloc_bytes, const py::object& bf16_gemm,
                    const py::object& int8_gemm) {
  Py_buffer view;
  if (PyObject_GetBuffer(buffer.ptr(), &view, PyBUF_SIMPLE) != 0) throw py::error_already_set();
  struct Release {
    Py_buffer* v;
    ~Release() { PyBuffer_Release(v); }  // runs after `nogil` below has taken the GIL back
  } release{&view};
  dpn::LoadOptions o;
  o.max_alloc_bytes = max_alloc_bytes;
  o.bf16_gemm = gemm_choice<dpn::Bf16Gemm>(bf16_gemm);
  o.int8_gemm = gemm_choice<dpn::Int8Gemm>(int8_gemm);
  std::shared_ptr<const dpn::Model> m;
  {
    py::gil_scoped_release nogil;
    m = dpn::Model::load_from_memory(view.buf, static_cast<size_t>(view.len), dpn::BufferMode::Copy, o);
  }
  return wrap(std::move(m));
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
  // The buffer protocol exposes the model file's bytes (mapped or owned) read-only, in place: a
  // memoryview of them keeps the model alive, so pickling needs no copy of a large file.
  py::class_<PyModel>(m, "Model", py::buffer_protocol())
      .def_buffer([](const PyModel& s) {
        return py::buffer_info(const_cast<uint8_t*>(s.model->file_data()), 1,
                               py::format_descriptor<uint8_t>::format(), 1,
                               {static_cast<py::ssize_t>(s.model->file_size())}, {1}, true);
      })
      .def_static("load", &load, py::arg("path"), py::arg("copy") = false,
                  py::arg("max_alloc_bytes") = 0, py::arg("bf16_gemm") = py::none(),
                  py::arg("int8_gemm") = py::none(),
                  "Load and validate a model.bin file (path as bytes or str).")
      .def_static("load_memory", &load_memory, py::arg("buffer"), py::arg("max_alloc_bytes") = 0,
                  py::arg("bf16_gemm") = py::none(), py::arg("int8_gemm") = py::none(),
                  "Load and validate a model file's content from a C-contiguous buffer (copied once).")
      .def(
          "file_bytes",
          [](const py::object& self) {
            PyObject* v = PyMemoryView_FromObject(self.ptr());
            if (!v) throw py::error_already_set();
            return py::reinterpret_steal<py::object>(v);
          },
          "The model file's bytes as a read-only memoryview (no copy; keeps the model alive).")
      .def("predict", &predict, py::arg("batch"), py::arg("threads") = 1, py::arg("logits") = false,
           py::arg("allow_nan") = false, py::arg("shared") = py::none(), py::arg("groups") = py::none(),
           "Predict for a dict of numpy arrays; float32 [B] probabilities (or logits). shared: the "
           "fields given once per user (a dict); groups: int64 [U + 1] offsets of each user's rows.")
      .def_property_readonly("metadata_json", [](const PyModel& s) { return s.model->metadata_json(); })
      .def_property_readonly("num_fields", [](const PyModel& s) { return s.model->num_fields(); });
}
