// model.bin container: header and tensor-table validation (docs/format.md §1-§3).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace dpn::format {

enum class DType : uint32_t { F32 = 0, F16 = 1, BF16 = 2, I64 = 3, I32 = 4, I8 = 5 };
const char* dtype_name(DType d);
// float32, float16 or bfloat16 (opset 3 for the last two).
inline bool is_float(DType d) { return d == DType::F32 || d == DType::F16 || d == DType::BF16; }
// The dtypes a parameter may have: the floats, or int8 with its scales (opset 4, docs/format.md §3.2).
inline bool is_param_dtype(DType d) { return is_float(d) || d == DType::I8; }
// Bytes per element of a float dtype or int8 (what a float32 copy multiplies by 4 / this).
inline size_t elem_size(DType d) {
  return d == DType::F32 ? 4 : d == DType::I8 ? 1 : d == DType::I64 ? 8 : d == DType::I32 ? 4 : 2;
}

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> dims;
  uint64_t offset = 0;  // absolute offset in the file
  uint64_t nbytes = 0;
  const uint8_t* data = nullptr;  // points into the mapping
  // int8 only (§3.2): its float32 scales (the tensor `<name>.scale`, in the mapping, or widened from
  // float16 into Container::widened; checked finite and >= 0), one per row (product(dims[:-1]) of them)
  // or, when per_column, one per column. half_scales: the file stores them as float16.
  const float* scales = nullptr;
  bool per_column = false;
  bool half_scales = false;
};

struct Container {
  uint32_t version = 0;
  std::string metadata;  // JSON text (copied: small, and kept for metadata_json())
  std::vector<TensorInfo> tensors;
  std::unordered_map<std::string, size_t> by_name;
  // float32 copies of float16/bfloat16 tensors an op computes with in float32, made once at load
  // (ops/op.cpp) and kept here, beside the mapping, for as long as the ops point into them.
  mutable std::unordered_map<std::string, std::vector<float>> widened;

  const TensorInfo* find(const std::string& name) const {
    auto it = by_name.find(name);
    return it == by_name.end() ? nullptr : &tensors[it->second];
  }
};

// Validates everything §2-§3 require, in the stated order; throws FormatError on the first failure.
// `data` must stay valid while the returned tensors are used.
Container read_container(const uint8_t* data, size_t size);

}  // namespace dpn::format
