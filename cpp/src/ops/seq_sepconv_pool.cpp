// `seq_sepconv_pool`: the mean over the valid positions of a depthwise-separable convolution (a
// depthwise k-tap convolution + bias, then a pointwise Linear), the context of the separable-
// convolution generators (docs/format.md §5b, opset 5). The mean is linear, so no position's
// convolution is formed: kernels::dwconv_mean gives each row's mean depthwise output in O(L·n), and
// one GEMM over the block applies the pointwise weight to the means. With sessions (§5d): per
// session, or pooled over every session's valid positions (the DyJoint decoder's HeteroDPO context).
#include <algorithm>
#include <cstring>

#include "kernels/dwconv.h"
#include "kernels/gemm.h"
#include "ops/op.h"
#include "ops/seq.h"
#include "ops/session.h"

namespace dpn::ops {

namespace {

class SeqSepconvPool : public Op {
 public:
  SeqSepconvPool(int64_t T, int64_t S, bool per_session, int64_t n, int64_t k, const float* dww,
                 const float* dwb, const float* pww, const float* pwb)
      : T_(T),
        S_(S),
        per_session_(per_session || S == 1),  // S = 1: the per-row form, as before sessions
        n_(n),
        k_(k),
        taps_(size_t(k * n)),
        dwb_(dwb, dwb + n),
        pwb_(pwb, pwb + n) {
    width = per_session ? S * n : n;
    for (int64_t j = 0; j < n; ++j)  // torch [n, k] -> the kernels' [k, n]
      for (int64_t t = 0; t < k; ++t) taps_[size_t(t * n + j)] = dww[j * k + t];
    pw_.pack(pww, n, n, 1, n);  // torch Linear layout [out, in]
  }

  size_t scratch_floats(int64_t rows) const override { return size_t(rows * S_ * (n_ + 1) + n_); }

  // With sessions S each session's depthwise outputs are its own (zero padding at its length); the
  // output is each session's mean (per_session) or the mean over every valid position of every
  // session, which is the sessions' means weighted by their lengths.
  void run(const Block& blk, const float* const* in, float* out, float* scratch) const override {
    const int64_t R = blk.rows, rw = T_ * n_, G = per_session_ ? R * S_ : R;
    float* u = scratch;      // [G, n]: each output row's mean depthwise output plus its bias
    float* us = u + G * n_;  // one session's mean (the pooled form)
    float* valid = us + n_;  // [G]: valid positions under each output row (exact up to 2^24)
    std::fill(valid, valid + G, 0.0f);
    for (int64_t b = 0; b < R; ++b) {
      float* ub = u + (per_session_ ? b * S_ : b) * n_;
      if (!per_session_) std::memset(ub, 0, sizeof(float) * size_t(n_));
      for (int64_t s = 0; s < S_; ++s) {
        const int64_t L = seq_len(in[1][b * S_ + s], T_);
        const float* x = in[0] + (b * S_ + s) * rw;
        if (per_session_) {
          float* o = u + (b * S_ + s) * n_;
          kernels::dwconv_mean(x, L, n_, taps_.data(), k_, o);
          if (L > 0)
            for (int64_t j = 0; j < n_; ++j) o[j] += dwb_[size_t(j)];
          valid[b * S_ + s] = static_cast<float>(L);
          continue;
        }
        if (L == 0) continue;
        kernels::dwconv_mean(x, L, n_, taps_.data(), k_, us);
        for (int64_t j = 0; j < n_; ++j) ub[j] += static_cast<float>(L) * us[j];
        valid[b] += static_cast<float>(L);
      }
      if (!per_session_ && valid[b] > 0) {
        const float inv = 1.0f / valid[b];
        for (int64_t j = 0; j < n_; ++j) ub[j] = ub[j] * inv + dwb_[size_t(j)];
      }
    }
    kernels::gemm(u, n_, G, pw_, pwb_.data(), kernels::Act::Identity, out, n_, blk.threads);
    for (int64_t g = 0; g < G; ++g)  // an empty row's (session's) mean is zero, not the pointwise bias
      if (valid[g] == 0) std::memset(out + g * n_, 0, sizeof(float) * size_t(n_));
  }

 private:
  int64_t T_, S_;
  bool per_session_;
  int64_t n_, k_;
  std::vector<float> taps_, dwb_, pwb_;
  kernels::PackedMatrix pw_;
};

}  // namespace

std::unique_ptr<Op> make_seq_sepconv_pool(const NodeBuilder& nb) {
  nb.expect_inputs(2, 2);
  const int64_t S = seq_sessions(nb, 1);
  const auto [T, n, k] = seq_conv_attrs(nb, S);
  const int64_t per_session = nb.attr_int("per_session", 0, 0);
  if (per_session > 1) nb.fail("attribute 'per_session' must be 0 or 1");
  const float* dww = nb.param("dw_weight", {n, k});
  const float* dwb = nb.param("dw_bias", {n});
  const float* pww = nb.param("pw_weight", {n, n});
  const float* pwb = nb.param("pw_bias", {n});
  return std::make_unique<SeqSepconvPool>(T, S, per_session == 1, n, k, dww, dwb, pww, pwb);
}

}  // namespace dpn::ops
