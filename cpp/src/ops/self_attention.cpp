// `self_attention`: masked multi-head self-attention over a sequence (docs/format.md §5). The valid
// positions of a block are gathered into one matrix, so the Q/K/V and output projections are two
// GEMMs over Σ lengths rows (no work on padding); scores, softmax and the weighted sum of values run
// per row over keys < length in kernels::attention_rows.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/attention.h"
#include "kernels/gemm.h"
#include "ops/op.h"
#include "ops/seq.h"
#include "ops/session.h"

namespace dpn::ops {

namespace {

constexpr int64_t kPassPositions = 2048;

class SelfAttention : public Op {
 public:
  SelfAttention(int64_t T, int64_t S, int64_t d, int64_t H, const float* const w[4],
                const float* const b[4])
      : T_(T), S_(S), d_(d), H_(H) {
    width = S * T * d;
    std::vector<float> qkv(size_t(3 * d * d));  // torch layout [3d, d]: rows q, then k, then v
    for (int p = 0; p < 3; ++p) {
      std::memcpy(qkv.data() + p * d * d, w[p], sizeof(float) * size_t(d * d));
      qkv_b_.insert(qkv_b_.end(), b[p], b[p] + d);
    }
    qkv_.pack(qkv.data(), d, 3 * d, 1, d);
    o_.pack(w[3], d, d, 1, d);
    o_b_.assign(b[3], b[3] + d);
  }

  // Rows per pass: at most kPassPositions positions (and at least one row), so scratch stays
  // bounded by the pass, not by the block (GEMMs of ~2k rows are as fast per row as larger ones).
  int64_t pass_rows(int64_t rows) const {
    return std::min(rows, std::max<int64_t>(1, kPassPositions / T_));
  }

  // With sessions S, each session is a row of T positions (ops/session.h): rows·S rows.
  size_t scratch_floats(int64_t rows) const override {
    return size_t(pass_rows(rows * S_) * T_ * 5 * d_ + kernels::attention_scratch_floats(T_, d_));
  }

  void run(const Block& blk, const float* const* in, float* out, float* scratch) const override {
    const int64_t R = blk.rows * S_, pr = pass_rows(R), rw = T_ * d_;
    for (int64_t b0 = 0; b0 < R; b0 += pr)
      run_pass(in[0] + b0 * rw, in[1] + b0, std::min(pr, R - b0), out + b0 * rw, scratch, blk.threads);
  }

  void run_pass(const float* x, const float* len, int64_t R, float* out, float* scratch,
                int threads) const {
    const int64_t rw = T_ * d_, dh = d_ / H_;
    float* X = scratch;  // [N, d] valid positions of every row, one after another
    int64_t N = 0;
    for (int64_t b = 0; b < R; ++b) {
      const int64_t L = seq_len(len[b], T_);
      std::memcpy(X + N * d_, x + b * rw, sizeof(float) * size_t(L * d_));
      N += L;
    }
    float* QKV = X + N * d_;      // [N, 3d]
    float* A = QKV + N * 3 * d_;  // [N, d] attention outputs
    float* O = X;                 // [N, d] after the output projection (X is spent by then)
    float* s = A + N * d_;        // the attention kernel's scratch
    if (N > 0)
      kernels::gemm(X, d_, N, qkv_, qkv_b_.data(), kernels::Act::Identity, QKV, 3 * d_, threads);
    const float scale = 1.0f / std::sqrt(static_cast<float>(dh));
    int64_t r0 = 0;
    for (int64_t b = 0; b < R; ++b) {
      const int64_t L = seq_len(len[b], T_);
      kernels::attention_rows(QKV + r0 * 3 * d_, 3 * d_, L, d_, H_, scale, A + r0 * d_, d_, s);
      r0 += L;
    }
    if (N > 0) kernels::gemm(A, d_, N, o_, o_b_.data(), kernels::Act::Identity, O, d_, threads);
    r0 = 0;
    for (int64_t b = 0; b < R; ++b) {
      const int64_t L = seq_len(len[b], T_);
      float* o = out + b * rw;
      std::memcpy(o, O + r0 * d_, sizeof(float) * size_t(L * d_));
      std::memset(o + L * d_, 0, sizeof(float) * size_t((T_ - L) * d_));
      r0 += L;
    }
  }

 private:
  int64_t T_, S_, d_, H_;
  kernels::PackedMatrix qkv_, o_;
  std::vector<float> qkv_b_, o_b_;
};

}  // namespace

std::unique_ptr<Op> make_self_attention(const NodeBuilder& nb) {
  nb.expect_inputs(2, 2);
  const int64_t T = nb.attr_int("max_len", 1), d = nb.attr_int("dim", 1);
  const int64_t H = nb.attr_int("heads", 1, 1);
  const int64_t lim = int64_t(1) << 16;
  if (T > lim || d > lim || T * d > (int64_t(1) << 24)) nb.fail("attribute too large");
  if (d % H != 0) nb.fail("heads=" + std::to_string(H) + " must divide dim=" + std::to_string(d));
  const int64_t S = seq_sessions(nb, 1);
  if (S * T * d > (int64_t(1) << 24)) nb.fail("attribute too large");
  if (nb.in_widths()[0] != S * T * d)
    nb.fail("input x has width " + std::to_string(nb.in_widths()[0]) + ", expected " +
            (S > 1 ? "sessions*" : "") + "max_len*dim=" + std::to_string(S * T * d));
  const char* roles[4][2] = {
      {"q_weight", "q_bias"}, {"k_weight", "k_bias"}, {"v_weight", "v_bias"}, {"o_weight", "o_bias"}};
  const float* w[4];
  const float* b[4];
  for (int p = 0; p < 4; ++p) {
    w[p] = nb.param(roles[p][0], {d, d});
    b[p] = nb.param(roles[p][1], {d});
  }
  return std::make_unique<SelfAttention>(T, S, d, H, w, b);
}

}  // namespace dpn::ops
