// What one model load may allocate (docs/format.md, "Size bounds"): a file must not make the engine
// allocate far more than its own size (1,000 nodes packing one shared 4 MB weight once asked for
// 4 GB). The loading thread opens a LoadScope; PackedMatrix::pack charges it. Outside a scope (the
// kernel tests' direct packing) nothing is counted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>

namespace dpn::runtime {

class LoadScope {
 public:
  // limit: bytes the load may allocate; [file, file + file_size): the model's bytes, so a tensor
  // packed twice (by two nodes) is recognised by its address.
  LoadScope(uint64_t limit, const uint8_t* file, size_t file_size);
  ~LoadScope();
  LoadScope(const LoadScope&) = delete;
  LoadScope& operator=(const LoadScope&) = delete;

  // The node being built, named in errors.
  static void set_node(const std::string& label);
  // `copy` is a float32 copy of the file's tensor at `file_src` (a float16/bfloat16 tensor widened
  // at load): packing it counts as packing that tensor, so the one-packer rule still holds.
  static void note_copy(const void* copy, const void* file_src);
  // Whether this load's ops run bfloat16 GEMMs for bfloat16 weights (LoadOptions::bf16_gemm with
  // the file's metadata applied; false outside a scope). Set before the graph is built.
  static bool bf16_gemm();
  void set_bf16_gemm(bool on) { bf16_gemm_ = on; }
  // The same for int8 weights and the int8 GEMMs (LoadOptions::int8_gemm).
  static bool int8_gemm();
  void set_int8_gemm(bool on) { int8_gemm_ = on; }
  // The bound, once the container is read (it depends on the tensors' dtypes).
  void set_limit(uint64_t limit) { limit_ = limit; }

 private:
  friend void charge_pack(const void* src, uint64_t bytes);
  friend void charge_copy(uint64_t bytes);
  void charge(uint64_t bytes, const char* what);
  uint64_t limit_, used_ = 0;
  bool bf16_gemm_ = false, int8_gemm_ = false;
  const uint8_t* file_;
  size_t file_size_;
  std::string node_;
  std::unordered_map<const void*, std::string> packed_;  // file address -> node that packed it
  std::unordered_map<const void*, const void*> copies_;  // widened copy -> its file tensor
  LoadScope* outer_;
};

// Called before a weight is packed from `src` into `bytes` new bytes. Throws FormatError when the
// load would pass its limit, or when `src` (inside the file) was packed already: nodes may share an
// embedding table (read in place) but not a packed weight.
void charge_pack(const void* src, uint64_t bytes);
// Called before a float32 copy of a reduced-precision tensor is made (widened or dequantized at load).
void charge_copy(uint64_t bytes);

}  // namespace dpn::runtime
