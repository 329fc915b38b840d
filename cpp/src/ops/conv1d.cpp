// `conv1d`: a static 1-d convolution dim -> dim over a sequence's valid positions, zero padding at
// the row's length (docs/format.md §5b, opset 5; the "Conv1D" encoder of the paper's Table 15).
// With sessions S (§5d) each session is a row of its own: rows·S rows of T positions.
// One GEMM with K = k·n per pass of rows: the rows' valid positions are copied back to back with
// k/2 zero positions between them, so the k neighbours of a position are k·n consecutive floats
// and the GEMM reads its left operand in place with lda = n (overlapping windows, no im2col copy).
#include <algorithm>
#include <cstring>

#include "kernels/gemm.h"
#include "ops/op.h"
#include "ops/seq.h"
#include "ops/session.h"

namespace dpn::ops {

namespace {

constexpr int64_t kPassPositions = 2048;

class Conv1d : public Op {
 public:
  Conv1d(int64_t T, int64_t S, int64_t n, int64_t k, const float* w, const float* b)
      : T_(T), S_(S), n_(n), k_(k), bias_(b, b + n) {
    width = S * T * n;
    // torch [out, in, k] -> [out, k·n] with column τ·n + in: row `out` of a Linear over the window
    std::vector<float> wl(size_t(n * k * n));
    for (int64_t o = 0; o < n; ++o)
      for (int64_t i = 0; i < n; ++i)
        for (int64_t t = 0; t < k; ++t) wl[size_t(o * k * n + t * n + i)] = w[(o * n + i) * k + t];
    w_.pack(wl.data(), k * n, n, 1, k * n);
  }

  // Rows per pass: at most kPassPositions positions (at least one row), so scratch stays bounded by
  // the pass, not the block.
  int64_t pass_rows(int64_t rows) const {
    return std::min(rows, std::max<int64_t>(1, kPassPositions / (T_ + k_ / 2)));
  }

  size_t scratch_floats(int64_t rows) const override {
    const int64_t pr = pass_rows(rows * S_), h = k_ / 2;
    return size_t((2 * pr * (T_ + h) + h) * n_);
  }

  void run(const Block& blk, const float* const* in, float* out, float* scratch) const override {
    const int64_t R = blk.rows * S_, pr = pass_rows(R), rw = T_ * n_;
    for (int64_t b0 = 0; b0 < R; b0 += pr)
      run_pass(in[0] + b0 * rw, in[1] + b0, std::min(pr, R - b0), out + b0 * rw, scratch, blk.threads);
  }

 private:
  void run_pass(const float* x, const float* len, int64_t R, float* out, float* scratch,
                int threads) const {
    const int64_t rw = T_ * n_, h = k_ / 2;
    const size_t zrow = sizeof(float) * size_t(h * n_);
    float* X = scratch;  // [h zeros][row 0's L_0 positions][h zeros][row 1's] ... [h zeros]
    std::memset(X, 0, zrow);
    int64_t N = h, valid = 0;
    for (int64_t b = 0; b < R; ++b) {
      const int64_t L = seq_len(len[b], T_);
      std::memcpy(X + N * n_, x + b * rw, sizeof(float) * size_t(L * n_));
      std::memset(X + (N + L) * n_, 0, zrow);
      N += L + h;
      valid += L;
    }
    // Window r covers positions r .. r+k-1 of X, centred on r+h; windows centred on a gap are
    // computed and dropped (h per row).
    float* C = X + N * n_;
    if (valid > 0)
      kernels::gemm(X, n_, N - 2 * h, w_, bias_.data(), kernels::Act::Identity, C, n_, threads);
    int64_t r = 0;  // window of row b's position 0: its first position's index in X, less h
    for (int64_t b = 0; b < R; ++b) {
      const int64_t L = seq_len(len[b], T_);
      float* o = out + b * rw;
      std::memcpy(o, C + r * n_, sizeof(float) * size_t(L * n_));
      std::memset(o + L * n_, 0, sizeof(float) * size_t((T_ - L) * n_));
      r += L + h;
    }
  }

  int64_t T_, S_, n_, k_;
  std::vector<float> bias_;
  kernels::PackedMatrix w_;
};

}  // namespace

std::unique_ptr<Op> make_conv1d(const NodeBuilder& nb) {
  nb.expect_inputs(2, 2);
  const int64_t S = seq_sessions(nb, 1);
  const auto [T, n, k] = seq_conv_attrs(nb, S);
  const float* w = nb.param("weight", {n, n, k});
  const float* b = nb.param("bias", {n});
  return std::make_unique<Conv1d>(T, S, n, k, w, b);
}

}  // namespace dpn::ops
