// The GRU / AUGRU recurrence (ops/recurrence.h).
#include "ops/recurrence.h"

#include <algorithm>
#include <cstring>

#include "kernels/gru.h"
#include "ops/seq.h"

namespace dpn::ops {

namespace {

constexpr int64_t kPassFloats = int64_t(1) << 22;
// At most this many rows per pass, so that a pass's gathered inputs, projections and states (about
// 13 KB a row for the bench's dien config, T = 50, d = n = 32) stay near L2's size.
constexpr int64_t kPassRows = 64;

// Per-row scratch of a pass: its T gathered inputs, their projections and attention scores, its
// state, one step's W_hh·h and its place in the order; plus 2T + 2 counts per pass (run_pass).
int64_t row_floats(int64_t T, int64_t d, int64_t h) { return T * (d + 3 * h + 1) + 4 * h + 1; }

}  // namespace

Recurrence::Recurrence(const NodeBuilder& nb)
    : T_(nb.attr_int("max_len", 1)), d_(nb.attr_int("in", 1)), h_(nb.attr_int("hidden", 1)) {
  const int64_t lim = int64_t(1) << 16;
  if (T_ > lim || d_ > lim || h_ > lim || row_floats(T_, d_, h_) + 2 * T_ + 2 > kPassFloats)
    nb.fail("attribute too large");
  const float* wih = nb.param("weight_ih", {3 * h_, d_});
  const float* whh = nb.param("weight_hh", {3 * h_, h_});
  const float* bih = nb.param("bias_ih", {3 * h_});
  const float* bhh = nb.param("bias_hh", {3 * h_});
  bih_.assign(bih, bih + 3 * h_);
  bhh_.assign(bhh, bhh + 3 * h_);
  // torch layout [3h, in]: B(k, n) = w[n·in + k]. An int8 file's recurrence stays float32 (a
  // step's quantization error would compound over the steps); bfloat16 GEMMs as the file asks.
  auto weights = [&](const char* role) {
    return nb.param_is_bf16(role) ? kernels::Weights::Bf16 : kernels::Weights::F32;
  };
  wih_.pack_as(weights("weight_ih"), wih, d_, 3 * h_, 1, d_);
  whh_.pack_as(weights("weight_hh"), whh, h_, 3 * h_, 1, h_);
}

// Rows per pass: bounded scratch (at least one row, whose floats are bounded at load).
int64_t Recurrence::pass_rows(int64_t rows) const {
  const int64_t fit = std::max<int64_t>(1, (kPassFloats - 2 * T_ - 2) / row_floats(T_, d_, h_));
  return std::min({rows, kPassRows, fit});
}

size_t Recurrence::scratch_floats(int64_t rows) const {
  return size_t(pass_rows(rows) * row_floats(T_, d_, h_) + 2 * T_ + 2);
}

void Recurrence::run(const Block& blk, const float* x, const float* len, const float* att, bool reverse,
                     float* states, float* last, float* scratch) const {
  const int64_t pr = pass_rows(blk.rows);
  for (int64_t b0 = 0; b0 < blk.rows; b0 += pr)
    run_pass(x + b0 * T_ * d_, len + b0, att ? att + b0 * T_ : nullptr, reverse,
             std::min(pr, blk.rows - b0), states ? states + b0 * T_ * h_ : nullptr,
             last ? last + b0 * h_ : nullptr, scratch, blk.threads);
}

void Recurrence::run_pass(const float* x, const float* len, const float* att, bool reverse, int64_t R,
                          float* states, float* last, float* scratch, int threads) const {
  const int64_t T = T_, d = d_, h = h_, g3 = 3 * h_;
  // Row indices and counts are whole numbers below 2^22, exact as floats: kept in the float
  // scratch so that the op allocates nothing per call.
  float* order = scratch;         // [R] the rows, longest first
  float* above = order + R;       // [T + 1] above[l]: rows of length > l (step l's active rows)
  float* cursor = above + T + 1;  // [T + 1] where the next row of length l goes in `order`
  for (int64_t l = 0; l <= T; ++l) above[l] = 0.0f;
  for (int64_t b = 0; b < R; ++b) above[seq_len(len[b], T)] += 1.0f;
  float acc = 0.0f;
  for (int64_t l = T; l >= 0; --l) {
    const float exactly = above[l];
    cursor[l] = above[l] = acc;
    acc += exactly;
  }
  for (int64_t b = 0; b < R; ++b) {
    const int64_t l = seq_len(len[b], T);
    order[static_cast<int64_t>(cursor[l])] = static_cast<float>(b);
    cursor[l] += 1.0f;
  }
  auto row = [&](int64_t i) { return static_cast<int64_t>(order[i]); };
  auto active = [&](int64_t t) { return static_cast<int64_t>(above[t]); };
  const int64_t Lmax = R > 0 ? seq_len(len[row(0)], T) : 0;

  // Step-major gather of the valid positions (step t's rows at offset Σ_{s<t} active(s)).
  float* X = cursor + T + 1;  // [N, d]
  int64_t N = 0;
  for (int64_t t = 0; t < Lmax; ++t) N += active(t);
  float* A = X + N * d;           // [N] the attention of each (step, row), AUGRU
  float* GI = A + (att ? N : 0);  // [N, 3h] W_ih·x + b_ih
  float* Hs = GI + N * g3;        // [R, h] the states, in `order`
  float* GH = Hs + R * h;         // [R, 3h] one step's W_hh·h + b_hh
  for (int64_t t = 0, n0 = 0; t < Lmax; n0 += active(t), ++t)
    for (int64_t i = 0, n = active(t); i < n; ++i) {
      const int64_t b = row(i), L = seq_len(len[b], T);
      const int64_t p = reverse ? L - 1 - t : t;
      std::memcpy(X + (n0 + i) * d, x + b * T * d + p * d, sizeof(float) * size_t(d));
      if (att) A[n0 + i] = att[b * T + t];
    }
  if (N > 0) kernels::gemm(X, d, N, wih_, bih_.data(), kernels::Act::Identity, GI, g3, threads);
  std::memset(Hs, 0, sizeof(float) * size_t(R * h));
  if (states) std::memset(states, 0, sizeof(float) * size_t(R * T * h));
  for (int64_t t = 0, n0 = 0; t < Lmax; n0 += active(t), ++t) {
    const int64_t n = active(t);
    kernels::gemm(Hs, h, n, whh_, bhh_.data(), kernels::Act::Identity, GH, g3, threads);
    kernels::gru_gates(GI + n0 * g3, GH, att ? A + n0 : nullptr, n, h, Hs);
    if (states)
      for (int64_t i = 0; i < n; ++i)
        std::memcpy(states + row(i) * T * h + t * h, Hs + i * h, sizeof(float) * size_t(h));
  }
  if (last)
    for (int64_t i = 0; i < R; ++i)
      std::memcpy(last + row(i) * h, Hs + i * h, sizeof(float) * size_t(h));
}

}  // namespace dpn::ops
