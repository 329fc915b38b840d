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
      : T_(T), d_(d), h_(hid), act_(act), b1_(b1, b1 + hid), w2_(w2, w2 + hid), b2_(b2[0]) {
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
    n = 0;
    for (int64_t b = 0; b < R; ++b) {
      const int64_t L = seq_len(len[b], T_);
      float* o = out + b * d_;
      for (int64_t j = 0; j < d_; ++j) o[j] = 0.0f;
      for (int64_t i = 0; i < L; ++i, ++n) {
        const float* g = G + n * h_;
        float a = b2_;
        for (int64_t u = 0; u < h_; ++u) a += w2_[size_t(u)] * g[u];
        const float* k = x + b * rw + i * d_;
        for (int64_t j = 0; j < d_; ++j) o[j] += a * k[j];
      }
    }
  }

 private:
  int64_t T_, d_, h_;
  kernels::Act act_;
  std::vector<float> b1_, w2_;
  float b2_;
  kernels::PackedMatrix aq_, akp_;
};

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
