#include "runtime/load_budget.h"

#include "dpn/dpn.h"

namespace dpn::runtime {

namespace {
thread_local LoadScope* t_scope = nullptr;

std::string mib(uint64_t b) { return std::to_string((b + (1u << 20) - 1) >> 20) + " MiB"; }
}  // namespace

LoadScope::LoadScope(uint64_t limit, const uint8_t* file, size_t file_size)
    : limit_(limit), file_(file), file_size_(file_size), outer_(t_scope) {
  t_scope = this;
}

LoadScope::~LoadScope() { t_scope = outer_; }

void LoadScope::set_node(const std::string& label) {
  if (t_scope) t_scope->node_ = label;
}

void LoadScope::note_copy(const void* copy, const void* file_src) {
  if (t_scope) t_scope->copies_[copy] = file_src;
}

bool LoadScope::bf16_gemm() { return t_scope && t_scope->bf16_gemm_; }
bool LoadScope::int8_gemm() { return t_scope && t_scope->int8_gemm_; }

void charge_pack(const void* src, uint64_t bytes) {
  LoadScope* s = t_scope;
  if (!s) return;
  if (auto c = s->copies_.find(src); c != s->copies_.end()) src = c->second;
  const auto* p = static_cast<const uint8_t*>(src);
  if (s->file_ && p >= s->file_ && p < s->file_ + s->file_size_) {
    auto [it, fresh] = s->packed_.emplace(src, s->node_);
    if (!fresh)
      throw FormatError("invalid model graph: " + s->node_ +
                        ": its weight tensor is already packed for " + it->second +
                        " (nodes may share an embedding table, not a packed weight)");
  }
  s->charge(bytes, "packed weights");
}

void charge_copy(uint64_t bytes) {
  if (t_scope) t_scope->charge(bytes, "float32 copies of reduced-precision weights");
}

void LoadScope::charge(uint64_t bytes, const char* what) {
  if (bytes > limit_ - used_)
    throw FormatError("invalid model graph: " + node_ + ": the model needs more than " + mib(limit_) +
                      " beyond its file to load (" + what +
                      "); a caller that trusts the file can raise "
                      "the limit (LoadOptions::max_alloc_bytes, load(..., max_alloc_bytes=))");
  used_ += bytes;
}

}  // namespace dpn::runtime
