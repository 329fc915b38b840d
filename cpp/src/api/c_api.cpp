// The C ABI (dpn_c.h) over the C++ API: every entry point catches everything, so no exception
// crosses into C; the message goes to a thread-local buffer.
#include "dpn/dpn_c.h"

#include <cstring>
#include <exception>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "dpn/dpn.h"

struct dpn_model {
  std::shared_ptr<const dpn::Model> model;
};
struct dpn_holder {
  dpn::ModelHolder holder;
};

namespace {

thread_local std::string g_error;

dpn_status fail(dpn_status s, const char* msg) {
  try {
    g_error = msg;
  } catch (...) {
    g_error.clear();
  }
  return s;
}

// Runs fn, mapping each exception type to its status.
template <class F>
dpn_status guard(F&& fn) {
  try {
    g_error.clear();
    fn();
    return DPN_OK;
  } catch (const dpn::IoError& e) {
    return fail(DPN_ERR_IO, e.what());
  } catch (const dpn::FormatError& e) {
    return fail(DPN_ERR_FORMAT, e.what());
  } catch (const dpn::InputError& e) {
    return fail(DPN_ERR_INPUT, e.what());
  } catch (const std::invalid_argument& e) {
    return fail(DPN_ERR_INVALID_ARGUMENT, e.what());
  } catch (const std::out_of_range& e) {
    return fail(DPN_ERR_INVALID_ARGUMENT, e.what());
  } catch (const std::bad_alloc&) {
    return fail(DPN_ERR_OUT_OF_MEMORY, "out of memory");
  } catch (const dpn::Error& e) {  // e.g. a batch size mismatch: the request's fault
    return fail(DPN_ERR_INPUT, e.what());
  } catch (const std::exception& e) {
    return fail(DPN_ERR_INTERNAL, e.what());
  } catch (...) {
    return fail(DPN_ERR_INTERNAL, "unknown error");
  }
}

// No default case: -Wswitch flags a FieldKind added later that this ABI does not name yet.
int32_t kind_code(dpn::FieldKind k) {
  switch (k) {
    case dpn::FieldKind::Sparse: return DPN_SPARSE;
    case dpn::FieldKind::MultiHot: return DPN_MULTI_HOT;
    case dpn::FieldKind::Dense: return DPN_DENSE;
    case dpn::FieldKind::Sequence: return DPN_SEQUENCE;
    case dpn::FieldKind::Timestamps: return DPN_TIMESTAMPS;
  }
  return -1;  // a kind newer than this header: see dpn_field_info.kind
}

void need(const void* p, const char* what) {
  if (!p) throw std::invalid_argument(std::string(what) + " is NULL");
}

dpn::LoadOptions load_options(const dpn_load_options* o) {
  dpn::LoadOptions lo;
  if (!o) return lo;
  if (o->reserved32 || o->reserved[0] || o->reserved[1])
    throw std::invalid_argument("dpn_load_options.reserved must be zero");
  if ((o->flags & ~(DPN_LOAD_READ | DPN_LOAD_BF16_GEMM | DPN_LOAD_NO_BF16_GEMM | DPN_LOAD_INT8_GEMM |
                    DPN_LOAD_NO_INT8_GEMM)) ||
      ((o->flags & DPN_LOAD_BF16_GEMM) && (o->flags & DPN_LOAD_NO_BF16_GEMM)) ||
      ((o->flags & DPN_LOAD_INT8_GEMM) && (o->flags & DPN_LOAD_NO_INT8_GEMM)))
    throw std::invalid_argument(
        "dpn_load_options.flags must be DPN_LOAD_MAP or DPN_LOAD_READ, optionally | DPN_LOAD_BF16_GEMM "
        "or | DPN_LOAD_NO_BF16_GEMM (not both), and | DPN_LOAD_INT8_GEMM or | DPN_LOAD_NO_INT8_GEMM "
        "(not both)");
  lo.mode = o->flags & DPN_LOAD_READ ? dpn::LoadMode::Copy : dpn::LoadMode::Map;
  lo.bf16_gemm = o->flags & DPN_LOAD_BF16_GEMM      ? dpn::Bf16Gemm::On
                 : o->flags & DPN_LOAD_NO_BF16_GEMM ? dpn::Bf16Gemm::Off
                                                    : dpn::Bf16Gemm::Recorded;
  lo.int8_gemm = o->flags & DPN_LOAD_INT8_GEMM      ? dpn::Int8Gemm::On
                 : o->flags & DPN_LOAD_NO_INT8_GEMM ? dpn::Int8Gemm::Off
                                                    : dpn::Int8Gemm::Recorded;
  lo.max_alloc_bytes = o->max_alloc_bytes;
  return lo;
}

dpn::PredictOptions predict_options(const dpn_predict_options* options) {
  dpn::PredictOptions po;
  if (options) {
    if (options->reserved[0]) throw std::invalid_argument("dpn_predict_options.reserved must be zero");
    if (options->logits != 0 && options->logits != 1)
      throw std::invalid_argument("dpn_predict_options.logits must be 0 or 1");
    if (options->flags & ~DPN_PREDICT_ALLOW_NAN)
      throw std::invalid_argument("dpn_predict_options.flags: unknown bits");
    po.threads = options->threads;
    po.logits = options->logits != 0;
    po.allow_nan = (options->flags & DPN_PREDICT_ALLOW_NAN) != 0;
  }
  return po;
}

dpn::FieldInput field_input(const dpn_field_input& in) {
  for (const void* r : in.reserved)
    if (r) throw std::invalid_argument("dpn_field_input.reserved must be NULL");
  dpn::FieldInput v;
  v.ids = in.ids;
  v.values = in.values;
  v.rows = in.rows;
  v.cols = in.cols;
  v.offsets = in.offsets;
  return v;
}

std::vector<dpn::FieldInput> field_inputs(const dpn_field_input* inputs, size_t num_inputs) {
  if (num_inputs > 0) need(inputs, "inputs");
  std::vector<dpn::FieldInput> v(num_inputs);
  for (size_t i = 0; i < num_inputs; ++i) v[i] = field_input(inputs[i]);
  return v;
}

}  // namespace

extern "C" {

const char* dpn_version(void) { return dpn::version(); }
int dpn_c_abi_version(void) { return DPN_C_ABI_VERSION; }
const char* dpn_last_error(void) { return g_error.c_str(); }

const char* dpn_status_name(dpn_status s) {
  switch (s) {
    case DPN_OK: return "DPN_OK";
    case DPN_ERR_IO: return "DPN_ERR_IO";
    case DPN_ERR_FORMAT: return "DPN_ERR_FORMAT";
    case DPN_ERR_INPUT: return "DPN_ERR_INPUT";
    case DPN_ERR_INVALID_ARGUMENT: return "DPN_ERR_INVALID_ARGUMENT";
    case DPN_ERR_OUT_OF_MEMORY: return "DPN_ERR_OUT_OF_MEMORY";
    case DPN_ERR_INTERNAL: return "DPN_ERR_INTERNAL";
  }
  return "DPN_ERR_UNKNOWN";
}

dpn_status dpn_model_load(const char* path, dpn_model** out) {
  return guard([&] {
    need(path, "path");
    need(out, "out");
    *out = nullptr;
    auto m = dpn::Model::load(path);
    *out = new dpn_model{std::move(m)};
  });
}

dpn_status dpn_model_load_ex(const char* path, const dpn_load_options* options, dpn_model** out) {
  return guard([&] {
    need(path, "path");
    need(out, "out");
    *out = nullptr;
    auto m = dpn::Model::load(path, load_options(options));
    *out = new dpn_model{std::move(m)};
  });
}

dpn_status dpn_model_load_memory(const void* data, size_t size, int flags, dpn_model** out) {
  return guard([&] {
    need(out, "out");
    *out = nullptr;
    if (flags != DPN_LOAD_COPY && flags != DPN_LOAD_BORROW)
      throw std::invalid_argument("flags must be DPN_LOAD_COPY or DPN_LOAD_BORROW");
    auto m = dpn::Model::load_from_memory(
        data, size, flags == DPN_LOAD_BORROW ? dpn::BufferMode::Borrow : dpn::BufferMode::Copy);
    *out = new dpn_model{std::move(m)};
  });
}

dpn_status dpn_model_share(const dpn_model* model, dpn_model** out) {
  return guard([&] {
    need(model, "model");
    need(out, "out");
    *out = new dpn_model{model->model};
  });
}

void dpn_model_free(dpn_model* model) { delete model; }

int64_t dpn_model_num_fields(const dpn_model* model) { return model ? model->model->num_fields() : 0; }

dpn_status dpn_model_field(const dpn_model* model, int64_t index, dpn_field_info* out) {
  return guard([&] {
    need(model, "model");
    need(out, "out");
    const auto& fs = model->model->fields();
    if (index < 0 || index >= static_cast<int64_t>(fs.size()))
      throw std::invalid_argument("field index " + std::to_string(index) + " out of range");
    const dpn::FieldInfo& f = fs[size_t(index)];
    out->name = f.name.c_str();
    out->kind = kind_code(f.kind);
    out->dim = f.dim;
    out->vocab = f.vocab;
    out->max_len = f.max_len;
  });
}

int64_t dpn_model_field_index(const dpn_model* model, const char* name) {
  if (!model || !name) return -1;
  try {
    return model->model->field_index(name);
  } catch (...) {
    return -1;
  }
}

const char* dpn_model_metadata_json(const dpn_model* model) {
  return model ? model->model->metadata_json().c_str() : "";
}

dpn_status dpn_model_predict(const dpn_model* model, const dpn_field_input* inputs, size_t num_inputs,
                             int64_t batch, float* out, const dpn_predict_options* options) {
  return guard([&] {
    need(model, "model");
    const dpn::PredictOptions po = predict_options(options);
    model->model->predict(field_inputs(inputs, num_inputs), batch, out, po);
  });
}

dpn_status dpn_model_predict_request(const dpn_model* model, const dpn_request* request, float* out,
                                     const dpn_predict_options* options) {
  return guard([&] {
    need(model, "model");
    need(request, "request");
    const size_t size = request->struct_size;
    if (size < sizeof(dpn_request))
      throw std::invalid_argument("dpn_request.struct_size is " + std::to_string(size) +
                                  ", less than this library's sizeof(dpn_request) (" +
                                  std::to_string(sizeof(dpn_request)) + ")");
    // A newer caller's struct: accepted when it asks for nothing this library does not know.
    const unsigned char* tail = reinterpret_cast<const unsigned char*>(request) + sizeof(dpn_request);
    for (size_t k = 0; k < size - sizeof(dpn_request); ++k)
      if (tail[k])
        throw std::invalid_argument("dpn_request: members past this library's version must be zero");
    const dpn::PredictOptions po = predict_options(options);
    dpn::SharedInputs sh;
    if (request->num_shared > size_t(model->model->num_fields()))
      throw dpn::RequestError("request: num_shared is " + std::to_string(request->num_shared) +
                              ", more than the model's " + std::to_string(model->model->num_fields()) +
                              " fields (each is shared at most once)");
    if (request->num_shared > 0) need(request->shared, "request->shared");
    for (size_t k = 0; k < request->num_shared; ++k)
      sh.fields.push_back(
          dpn::SharedInput{request->shared[k].field, field_input(request->shared[k].input)});
    sh.groups = request->groups;
    sh.users = request->users;
    model->model->predict(field_inputs(request->inputs, request->num_inputs), request->batch, sh, out,
                          po);
  });
}

dpn_status dpn_holder_create(const dpn_model* model, dpn_holder** out) {
  return guard([&] {
    need(out, "out");
    *out = nullptr;
    auto* h = new dpn_holder;
    if (model) h->holder.set(model->model);
    *out = h;
  });
}

void dpn_holder_free(dpn_holder* holder) { delete holder; }

dpn_status dpn_holder_get(const dpn_holder* holder, dpn_model** out) {
  return guard([&] {
    need(holder, "holder");
    need(out, "out");
    *out = nullptr;
    auto m = holder->holder.get();
    if (m) *out = new dpn_model{std::move(m)};
  });
}

dpn_status dpn_holder_set(dpn_holder* holder, const dpn_model* model) {
  return guard([&] {
    need(holder, "holder");
    holder->holder.set(model ? model->model : nullptr);
  });
}

dpn_status dpn_holder_load(dpn_holder* holder, const char* path) {
  return guard([&] {
    need(holder, "holder");
    need(path, "path");
    holder->holder.load(path);
  });
}

dpn_status dpn_holder_load_ex(dpn_holder* holder, const char* path, const dpn_load_options* options) {
  return guard([&] {
    need(holder, "holder");
    need(path, "path");
    holder->holder.load(path, load_options(options));
  });
}

}  // extern "C"
