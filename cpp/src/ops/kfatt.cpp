// `kfatt`: Kalman Filtering Attention (docs/format.md §5d; dpn_infer/nn/kfatt.py), the decoder of
// the session models. The query's projections (q, the prior mean, the prior log precision) are one
// GEMM per block; the valid behaviours of a pass are gathered into one matrix so the key/value
// projection is one GEMM over Σ lengths rows (no work on padding), as in self_attention; for
// "freq" each session's mean behaviour goes through one GEMM for its log precision. The weights
// are softmaxes in log space (kernels::softmax_rows), so large scores neither overflow nor change
// the result; the output projection is a last GEMM.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/gemm.h"
#include "kernels/kfatt.h"
#include "kernels/softmax.h"
#include "ops/op.h"
#include "ops/seq.h"
#include "ops/session.h"

namespace dpn::ops {

namespace {

constexpr int64_t kPassPositions = 2048;

// torch.nn.functional.softplus (beta 1, threshold 20).
inline float softplus(float x) { return x > 20.0f ? x : std::log1p(std::exp(x)); }

class KfAtt : public Op {
 public:
  struct Params {
    const float *qw, *qb, *kw, *kb, *vw, *vb, *ow, *ob, *mw, *mb, *pw, *pb, *gw, *gb;
  };

  KfAtt(int64_t L, int64_t S, int64_t dq, int64_t d, int64_t A, int64_t out, int64_t H, bool freq,
        const Params& p)
      : L_(L), S_(S), dq_(dq), d_(d), A_(A), H_(H), freq_(freq) {
    width = out;
    // query side [2A + H, dq] in torch layout: q, then the prior mean, then the prior log precision
    std::vector<float> qs(size_t((2 * A + H) * dq));
    std::memcpy(qs.data(), p.qw, sizeof(float) * size_t(A * dq));
    std::memcpy(qs.data() + A * dq, p.mw, sizeof(float) * size_t(A * dq));
    std::memcpy(qs.data() + 2 * A * dq, p.pw, sizeof(float) * size_t(H * dq));
    qs_b_.assign(p.qb, p.qb + A);
    qs_b_.insert(qs_b_.end(), p.mb, p.mb + A);
    qs_b_.insert(qs_b_.end(), p.pb, p.pb + H);
    qs_.pack(qs.data(), dq, 2 * A + H, 1, dq);
    std::vector<float> kv(size_t(2 * A * d));  // [2A, d]: k, then v
    std::memcpy(kv.data(), p.kw, sizeof(float) * size_t(A * d));
    std::memcpy(kv.data() + A * d, p.vw, sizeof(float) * size_t(A * d));
    kv_b_.assign(p.kb, p.kb + A);
    kv_b_.insert(kv_b_.end(), p.vb, p.vb + A);
    kv_.pack(kv.data(), d, 2 * A, 1, d);
    o_.pack(p.ow, A, out, 1, A);
    o_b_.assign(p.ob, p.ob + out);
    if (freq) {
      g_.pack(p.gw, d, H, 1, d);
      g_b_.assign(p.gb, p.gb + H);
    }
  }

  int64_t pass_rows(int64_t rows) const {
    return std::min(rows, std::max<int64_t>(1, kPassPositions / (S_ * L_)));
  }

  // Per pass of R rows: X [N, d], KV [N, 2A], Qs [R, 2A + H], VQ [R, A], (freq) xbar [R·S, d] and
  // its log precisions [R·S, H]; per row: weights [1 + S·L], session values [S, A] and logs [S].
  size_t scratch_floats(int64_t rows) const override {
    const int64_t R = pass_rows(rows), N = R * S_ * L_;
    return size_t(N * (d_ + 2 * A_) + R * (3 * A_ + H_) + (freq_ ? R * S_ * (d_ + H_) : 0) +
                  (1 + S_ * L_) + S_ * A_ + S_ + 16);
  }

  void run(const Block& blk, const float* const* in, float* out, float* scratch) const override {
    const int64_t pr = pass_rows(blk.rows);
    for (int64_t b0 = 0; b0 < blk.rows; b0 += pr)
      run_pass(in[0] + b0 * dq_, in[1] + b0 * S_ * L_ * d_, in[2] + b0 * S_, std::min(pr, blk.rows - b0),
               out + b0 * width, scratch, blk.threads);
    if (add_)  // the optional 4th input, added to the output
      for (int64_t k = 0; k < blk.rows * width; ++k) out[k] += in[3][k];
  }

  bool add_ = false;

 private:
  void run_pass(const float* q, const float* x, const float* len, int64_t R, float* out, float* scratch,
                int threads) const {
    const int64_t SL = S_ * L_, dh = A_ / H_, QW = 2 * A_ + H_;
    float* X = scratch;  // [N, d] every valid behaviour of the pass, row by row, session by session
    int64_t N = 0;
    for (int64_t b = 0; b < R * S_; ++b) {
      const int64_t n = seq_len(len[b], L_);
      std::memcpy(X + N * d_, x + b * L_ * d_, sizeof(float) * size_t(n * d_));
      N += n;
    }
    float* KV = X + N * d_;
    float* Qs = KV + N * 2 * A_;
    float* VQ = Qs + R * QW;
    float* xbar = VQ + R * A_;
    float* lpm = xbar + (freq_ ? R * S_ * d_ : 0);
    float* w = lpm + (freq_ ? R * S_ * H_ : 0);
    float* vbar = w + 1 + SL;
    float* logpi = vbar + S_ * A_;
    if (N > 0) kernels::gemm(X, d_, N, kv_, kv_b_.data(), kernels::Act::Identity, KV, 2 * A_, threads);
    kernels::gemm(q, dq_, R, qs_, qs_b_.data(), kernels::Act::Identity, Qs, QW, threads);
    if (freq_) {  // each session's mean behaviour (zeros for an empty one, masked below)
      int64_t r0 = 0;
      for (int64_t m = 0; m < R * S_; ++m) {
        const int64_t n = seq_len(len[m], L_);
        float* xb = xbar + m * d_;
        std::fill(xb, xb + d_, 0.0f);
        for (int64_t t = 0; t < n; ++t)
          for (int64_t j = 0; j < d_; ++j) xb[j] += X[(r0 + t) * d_ + j];
        if (n > 1)
          for (int64_t j = 0; j < d_; ++j) xb[j] /= static_cast<float>(n);
        r0 += n;
      }
      kernels::gemm(xbar, d_, R * S_, g_, g_b_.data(), kernels::Act::Identity, lpm, H_, threads);
    }
    const float scale = 1.0f / std::sqrt(static_cast<float>(dh));
    int64_t r0 = 0;  // the row's first behaviour in X / KV
    for (int64_t b = 0; b < R; ++b) {
      int64_t nrow = 0;
      for (int64_t s = 0; s < S_; ++s) nrow += seq_len(len[b * S_ + s], L_);
      const float* Qb = Qs + b * QW;
      for (int64_t h = 0; h < H_; ++h) {
        const float* Q = Qb + h * dh;
        const float* mu = Qb + A_ + h * dh;
        const float lp0 = Qb[2 * A_ + h];
        float* v = VQ + b * A_ + h * dh;
        if (!freq_) {  // softmax over [log prior precision, behaviour scores]
          w[0] = lp0;
          kernels::kfatt_scores(Q, KV + r0 * 2 * A_ + h * dh, 2 * A_, nrow, dh, scale, w + 1);
          kernels::softmax_rows(w, 1, 1 + nrow, 1 + nrow);
          for (int64_t e = 0; e < dh; ++e) v[e] = w[0] * mu[e];
          kernels::kfatt_wsum(w + 1, KV + r0 * 2 * A_ + A_ + h * dh, 2 * A_, nrow, dh, v);
          continue;
        }
        // freq: each non-empty session m one sensor of log weight
        // log pi_m = log P_m − softplus(log P_m − log 1/sigma_m^2), P_m = Σ_t exp(score_t)
        int64_t t0 = r0, g = 0;
        for (int64_t s = 0; s < S_; ++s) {
          const int64_t n = seq_len(len[b * S_ + s], L_);
          if (n == 0) continue;
          kernels::kfatt_scores(Q, KV + t0 * 2 * A_ + h * dh, 2 * A_, n, dh, scale, w);
          int64_t top = 0;
          for (int64_t t = 1; t < n; ++t)
            if (w[t] > w[top]) top = t;
          const float smax = w[top];
          kernels::softmax_rows(w, 1, n, n);
          // log Σ exp(s_t) = s_top − log softmax_top (softmax_top ≥ 1/n: no cancellation)
          const float logP = smax - std::log(w[top]);
          float* vb = vbar + g * A_;
          std::fill(vb, vb + dh, 0.0f);
          kernels::kfatt_wsum(w, KV + t0 * 2 * A_ + A_ + h * dh, 2 * A_, n, dh, vb);
          logpi[g] = logP - softplus(logP - lpm[(b * S_ + s) * H_ + h]);
          t0 += n;
          ++g;
        }
        w[0] = lp0;
        for (int64_t m = 0; m < g; ++m) w[1 + m] = logpi[m];
        kernels::softmax_rows(w, 1, 1 + g, 1 + g);
        for (int64_t e = 0; e < dh; ++e) v[e] = w[0] * mu[e];
        kernels::kfatt_wsum(w + 1, vbar, A_, g, dh, v);
      }
      r0 += nrow;
    }
    kernels::gemm(VQ, A_, R, o_, o_b_.data(), kernels::Act::Identity, out, width, threads);
  }

  int64_t L_, S_, dq_, d_, A_, H_;
  bool freq_;
  kernels::PackedMatrix qs_, kv_, o_, g_;
  std::vector<float> qs_b_, kv_b_, o_b_, g_b_;
};

}  // namespace

std::unique_ptr<Op> make_kfatt(const NodeBuilder& nb) {
  nb.expect_inputs(3, 4);
  const int64_t L = nb.attr_int("max_len", 1), dq = nb.attr_int("query_dim", 1);
  const int64_t d = nb.attr_int("dim", 1), A = nb.attr_int("att_dim", 1);
  const int64_t out = nb.attr_int("out", 1), H = nb.attr_int("heads", 1, 1);
  const bool freq = nb.attr_enum("mode", {"base", "freq"}) == "freq";
  const int64_t lim = int64_t(1) << 16;
  if (L > lim || dq > lim || d > lim || A > lim || out > lim || H > A) nb.fail("attribute too large");
  if (A % H != 0) nb.fail("heads=" + std::to_string(H) + " must divide att_dim=" + std::to_string(A));
  const int64_t S = seq_sessions(nb, 2);
  if (S * L > schema::kMaxSessionPositions || S * L * d > (int64_t(1) << 24))
    nb.fail("sessions x max_len x dim too large");
  if (nb.in_widths()[0] != dq)
    nb.fail("input q has width " + std::to_string(nb.in_widths()[0]) +
            ", expected query_dim=" + std::to_string(dq));
  if (nb.in_widths()[1] != S * L * d)
    nb.fail("input x has width " + std::to_string(nb.in_widths()[1]) +
            ", expected sessions*max_len*dim=" + std::to_string(S * L * d));
  if (nb.in_widths().size() == 4 && nb.in_widths()[3] != out)
    nb.fail("input 3 (added to the output) has width " + std::to_string(nb.in_widths()[3]) +
            ", expected out=" + std::to_string(out));
  KfAtt::Params p{};
  p.qw = nb.param("q_weight", {A, dq});
  p.qb = nb.param("q_bias", {A});
  p.kw = nb.param("k_weight", {A, d});
  p.kb = nb.param("k_bias", {A});
  p.vw = nb.param("v_weight", {A, d});
  p.vb = nb.param("v_bias", {A});
  p.ow = nb.param("o_weight", {out, A});
  p.ob = nb.param("o_bias", {out});
  p.mw = nb.param("prior_mean_weight", {A, dq});
  p.mb = nb.param("prior_mean_bias", {A});
  p.pw = nb.param("prior_logprec_weight", {H, dq});
  p.pb = nb.param("prior_logprec_bias", {H});
  if (freq) {
    p.gw = nb.param("group_logprec_weight", {H, d});
    p.gb = nb.param("group_logprec_bias", {H});
  }
  auto op = std::make_unique<KfAtt>(L, S, dq, d, A, out, H, freq, p);
  op->add_ = nb.in_widths().size() == 4;
  return op;
}

}  // namespace dpn::ops
