// `target_attention`: DIN's activation unit (docs/format.md §5). fc1 over [q, k, q−k, q⊙k] splits,
// at load, into a per-row part (Wq + Wd)·q + b1 and a per-position part [(Wk − Wd); Wp]·[k, q⊙k],
// so the positions of a block are one GEMM of K = 2d over Σ lengths rows (no work on padding).
#include <algorithm>
#include <cstring>

#include "kernels/act.h"
#include "kernels/gemm.h"
#include "ops/op.h"
#include "ops/seq.h"

namespace dpn::ops {

namespace {

constexpr int64_t kPassPositions = 2048;
constexpr int64_t kPassFloats = int64_t(1) << 22;

class TargetAttention : public Op {
 public:
  TargetAttention(int64_t T, int64_t d, int64_t hid, kernels::Act act, const float* w1, const float* b1,
                  const float* w2, const float* b2)
      : T_(T), d_(d), h_(hid), act_(act), b1_(b1, b1 + hid), w2_(w2, w2 + hid), b2_(b2[0]), w1_(w1) {
    width = d;
    // w1 is torch layout [h, 4d]; columns [0,d) q, [d,2d) k, [2d,3d) q−k, [3d,4d) q⊙k.
    std::vector<float> aq(size_t(d * hid)), akp(size_t(2 * d * hid));  // row-major [K, h]
    for (int64_t u = 0; u < hid; ++u) {
      const float* r = w1 + u * 4 * d;
      for (int64_t k = 0; k < d; ++k) {
        aq[size_t(k * hid + u)] = static_cast<float>(double(r[k]) + double(r[2 * d + k]));
        akp[size_t(k * hid + u)] = static_cast<float>(double(r[d + k]) - double(r[2 * d + k]));
        akp[size_t((d + k) * hid + u)] = r[3 * d + k];
      }
    }
    aq_.pack(aq.data(), d, hid, hid, 1);
    akp_.pack(akp.data(), 2 * d, hid, hid, 1);
  }

  // Rows per pass: at most kPassPositions positions and kPassFloats of scratch (at least one row,
  // whose T·(2d + hidden) floats are bounded at load): bounded scratch.
  int64_t pass_rows(int64_t rows) const {
    const int64_t by_floats = kPassFloats / (T_ * (2 * d_ + h_) + h_);
    return std::min(rows, std::max<int64_t>(1, std::min(kPassPositions / T_, by_floats)));
  }

  size_t scratch_floats(int64_t rows) const override {
    const int64_t pr = pass_rows(rows);
    return size_t(pr * h_ + pr * T_ * (2 * d_ + h_));
  }

  void run(const Block& blk, const float* const* in, float* out, float* scratch) const override {
    const int64_t pr = pass_rows(blk.rows), rw = T_ * d_;
    for (int64_t b0 = 0; b0 < blk.rows; b0 += pr)
      run_pass(in[0] + b0 * d_, in[1] + b0 * rw, in[2] + b0, std::min(pr, blk.rows - b0), out + b0 * d_,
               scratch, blk.threads);
  }

  void run_pass(const float* q, const float* x, const float* len, int64_t R, float* out, float* scratch,
                int threads) const {
    const int64_t rw = T_ * d_;
    float* cq = scratch;     // [R, h]
    float* P = cq + R * h_;  // [N, 2d]: [k, q⊙k] per valid position
    int64_t N = 0;
    for (int64_t b = 0; b < R; ++b) {
      const int64_t L = seq_len(len[b], T_);
      const float* qb = q + b * d_;
      for (int64_t i = 0; i < L; ++i, ++N) {
        const float* k = x + b * rw + i * d_;
        float* p = P + N * 2 * d_;
        for (int64_t j = 0; j < d_; ++j) {
          p[j] = k[j];
          p[d_ + j] = qb[j] * k[j];
        }
      }
    }
    float* G = P + N * 2 * d_;  // [N, h]
    kernels::gemm(q, d_, R, aq_, b1_.data(), kernels::Act::Identity, cq, h_, threads);
    if (N > 0) kernels::gemm(P, 2 * d_, N, akp_, nullptr, kernels::Act::Identity, G, h_, threads);
    int64_t n = 0;
    for (int64_t b = 0; b < R; ++b) {  // G += the row's part, position by position
      const int64_t L = seq_len(len[b], T_);
      const float* c = cq + b * h_;
      for (int64_t i = 0; i < L; ++i, ++n) {
        float* g = G + n * h_;
        for (int64_t u = 0; u < h_; ++u) g[u] += c[u];
      }
    }
    kernels::act_inplace(G, N * h_, act_);  // the vector activation kernel over every position
    weighted_sum(
        G, R, [&](int64_t b) { return seq_len(len[b], T_); }, [&](int64_t b) { return x + b * rw; },
        out);
  }

  // out[b] = Σ_{i<L_b} (fc2 · G_n + b2) x_b[i], G's rows the rows' valid positions in order.
  template <class Len, class Rows>
  void weighted_sum(const float* G, int64_t R, Len&& len_of, Rows&& x_of, float* out) const {
    int64_t n = 0;
    for (int64_t b = 0; b < R; ++b) {
      const int64_t L = len_of(b);
      const float* xb = x_of(b);
      float* o = out + b * d_;
      for (int64_t j = 0; j < d_; ++j) o[j] = 0.0f;
      for (int64_t i = 0; i < L; ++i, ++n) {
        const float* g = G + n * h_;
        float a = b2_;
        for (int64_t u = 0; u < h_; ++u) a += w2_[size_t(u)] * g[u];
        const float* k = xb + i * d_;
        for (int64_t j = 0; j < d_; ++j) o[j] += a * k[j];
      }
    }
  }

  std::unique_ptr<SplitOp> split(const std::vector<char>&,
                                 const std::vector<char>& user_inputs) const override;

 private:
  friend class TargetAttentionSplit;
  int64_t T_, d_, h_;
  kernels::Act act_;
  std::vector<float> b1_, w2_;
  float b2_;
  kernels::PackedMatrix aq_, akp_;
  const float* w1_;  // fc1 in the file (alive as long as the model): what a split repacks
};

// One user's history, many candidates (q the candidate, x and the lengths the user's): the
// per-position part k·(W_k − W_d) once per user; per candidate only (q ⊙ k)·W_p, a GEMM of K = d
// instead of 2d, and the row's (W_q + W_d)·q. part: [1 + T·h + T·d] per user: its length, its
// positions' k·(W_k − W_d) ([T, h], rows < L written), its x ([T, d]).
class TargetAttentionSplit : public SplitOp {
 public:
  explicit TargetAttentionSplit(const TargetAttention& op) : op_(op) {
    const int64_t d = op.d_, hid = op.h_;
    by_columns = false;
    part_width = 1 + op.T_ * (hid + d);
    std::vector<float> ak(size_t(d * hid)), ap(size_t(d * hid));  // row-major [d, h]
    for (int64_t u = 0; u < hid; ++u) {
      const float* r = op.w1_ + u * 4 * d;
      for (int64_t k = 0; k < d; ++k) {
        ak[size_t(k * hid + u)] = static_cast<float>(double(r[d + k]) - double(r[2 * d + k]));
        ap[size_t(k * hid + u)] = r[3 * d + k];
      }
    }
    ak_.pack(ak.data(), d, hid, hid, 1);
    ap_.pack(ap.data(), d, hid, hid, 1);
  }

  size_t scratch_floats(int64_t rows) const override { return op_.scratch_floats(rows); }

  void run_user(const Block& blk, const float*, const float* const* in, float* part,
                float*) const override {
    const int64_t T = op_.T_, d = op_.d_, hid = op_.h_;
    for (int64_t b = 0; b < blk.rows; ++b) {
      float* p = part + b * part_width;
      const float* xb = in[1] + b * T * d;
      const int64_t L = seq_len(in[2][b], T);
      p[0] = static_cast<float>(L);
      if (L > 0) kernels::gemm(xb, d, L, ak_, nullptr, kernels::Act::Identity, p + 1, hid, blk.threads);
      std::memcpy(p + 1 + T * hid, xb, sizeof(float) * size_t(T * d));
    }
  }

  void run_candidate(const Block& blk, const float*, const float* const* in, UserRows part, float* out,
                     float* scratch) const override {
    const int64_t pr = op_.pass_rows(blk.rows);
    for (int64_t b0 = 0; b0 < blk.rows; b0 += pr) {
      UserRows p = part;
      p.user += b0;
      run_pass(in[0] + b0 * op_.d_, p, std::min(pr, blk.rows - b0), out + b0 * op_.d_, scratch,
               blk.threads);
    }
  }

 private:
  void run_pass(const float* q, UserRows part, int64_t R, float* out, float* scratch,
                int threads) const {
    const int64_t T = op_.T_, d = op_.d_, hid = op_.h_;
    auto len = [&](int64_t b) { return static_cast<int64_t>(part.row(b)[0]); };
    auto gk = [&](int64_t b) { return part.row(b) + 1; };
    auto xs = [&](int64_t b) { return part.row(b) + 1 + T * hid; };
    float* cq = scratch;      // [R, h]
    float* P = cq + R * hid;  // [N, d]: q ⊙ k per valid position
    int64_t N = 0;
    for (int64_t b = 0; b < R; ++b) {
      const float* qb = q + b * d;
      const float* xb = xs(b);
      for (int64_t i = 0, L = len(b); i < L; ++i, ++N)
        for (int64_t j = 0; j < d; ++j) P[N * d + j] = qb[j] * xb[i * d + j];
    }
    float* G = P + N * d;  // [N, h]
    kernels::gemm(q, d, R, op_.aq_, op_.b1_.data(), kernels::Act::Identity, cq, hid, threads);
    if (N > 0) kernels::gemm(P, d, N, ap_, nullptr, kernels::Act::Identity, G, hid, threads);
    int64_t n = 0;
    for (int64_t b = 0; b < R; ++b) {  // G += the user's positions' part and the row's part
      const float* c = cq + b * hid;
      const float* k = gk(b);
      for (int64_t i = 0, L = len(b); i < L; ++i, ++n)
        for (int64_t u = 0; u < hid; ++u) G[n * hid + u] += k[i * hid + u] + c[u];
    }
    kernels::act_inplace(G, N * hid, op_.act_);
    op_.weighted_sum(G, R, len, xs, out);
  }

  const TargetAttention& op_;
  kernels::PackedMatrix ak_, ap_;
};

std::unique_ptr<SplitOp> TargetAttention::split(const std::vector<char>&,
                                                const std::vector<char>& user_inputs) const {
  // The history and its lengths the user's, the query the candidate's.
  if (user_inputs[0] || !user_inputs[1] || !user_inputs[2]) return nullptr;
  return std::make_unique<TargetAttentionSplit>(*this);
}

}  // namespace

std::unique_ptr<Op> make_target_attention(const NodeBuilder& nb) {
  nb.expect_inputs(3, 3);
  const int64_t T = nb.attr_int("max_len", 1), d = nb.attr_int("dim", 1);
  const int64_t hid = nb.attr_int("hidden", 1);
  const int64_t lim = int64_t(1) << 16;
  if (T > lim || d > lim || hid > lim || T * d > (int64_t(1) << 24) ||
      T * (2 * d + hid) + hid > kPassFloats)
    nb.fail("attribute too large");
  if (nb.in_widths()[0] != d)
    nb.fail("input q has width " + std::to_string(nb.in_widths()[0]) +
            ", expected dim=" + std::to_string(d));
  if (nb.in_widths()[1] != T * d)
    nb.fail("input x has width " + std::to_string(nb.in_widths()[1]) +
            ", expected max_len*dim=" + std::to_string(T * d));
  seq_len_input(nb, 2);
  const std::string a = nb.attr_enum("act", {"sigmoid", "relu", "tanh"});
  const kernels::Act act = a == "relu"   ? kernels::Act::Relu
                           : a == "tanh" ? kernels::Act::Tanh
                                         : kernels::Act::Sigmoid;
  const float* w1 = nb.param("fc1_weight", {hid, 4 * d});
  const float* b1 = nb.param("fc1_bias", {hid});
  const float* w2 = nb.param("fc2_weight", {1, hid});
  const float* b2 = nb.param("fc2_bias", {1});
  return std::make_unique<TargetAttention>(T, d, hid, act, w1, b1, w2, b2);
}

}  // namespace dpn::ops
