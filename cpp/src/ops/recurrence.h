// The GRU / AUGRU recurrence shared by ops `gru` and `augru` (docs/format.md §5c). A pass over a
// block of rows orders its rows by length (longest first) and gathers their valid positions step
// by step (time-major), so
//   - the input projections of every valid position are ONE GEMM (W_ih, b_ih),
//   - step t's active rows (length > t) are a prefix of the ordered rows: one GEMM of W_hh over
//     their states, then the gate kernel (kernels/gru.h); a row does no work past its length.
#pragma once

#include <cstdint>

#include "kernels/gemm.h"
#include "ops/op.h"

namespace dpn::ops {

class Recurrence {
 public:
  // Reads attrs max_len, in, hidden and params weight_ih [3h, in], weight_hh [3h, h],
  // bias_ih / bias_hh [3h]; checks the size bounds (fails naming the node).
  explicit Recurrence(const NodeBuilder& nb);

  int64_t max_len() const { return T_; }
  int64_t in() const { return d_; }
  int64_t hidden() const { return h_; }
  size_t scratch_floats(int64_t rows) const;

  // x: [rows, T·in]; len: [rows]; att: [rows, T] (AUGRU) or nullptr (GRU); reverse: step t reads
  // position L − 1 − t. Writes states [rows, T·h] (every step's state, zeros past the length) and/or
  // last [rows, h] (the state after step L − 1, zeros when L = 0); either may be nullptr.
  void run(const Block& blk, const float* x, const float* len, const float* att, bool reverse,
           float* states, float* last, float* scratch) const;

 private:
  int64_t pass_rows(int64_t rows) const;
  void run_pass(const float* x, const float* len, const float* att, bool reverse, int64_t R,
                float* states, float* last, float* scratch, int threads) const;
  int64_t T_, d_, h_;
  std::vector<float> bih_, bhh_;
  kernels::PackedMatrix wih_, whh_;
};

}  // namespace dpn::ops
