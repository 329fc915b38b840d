// `homo_dpo`: homogeneous (behaviour-behaviour) sequence DPO, a dynamic depthwise convolution
// (docs/format.md §5b; docs/architecture.md, "The planner rule"). Per row: z = mean of the valid
// positions (or, opset 5, the optional third input: the separable generator's seq_sepconv_pool),
// h = sigma(g1 z), kernel = gate(g2 h) ∈ R^{k×n}, built for the whole block by two GEMMs
// (the kernel is reused at every position, so materializing it is the cheap way), then applied by
// kernels::dwconv_rows at the valid positions only.
#include <cstring>

#include "kernels/dwconv.h"
#include "kernels/gemm.h"
#include "kernels/softmax.h"
#include "ops/op.h"
#include "ops/seq.h"
#include "ops/session.h"

namespace dpn::ops {

namespace {

class HomoDpo : public Op {
 public:
  HomoDpo(int64_t T, int64_t S, int64_t n, int64_t k, int64_t l, Sigma sigma, kernels::Act gate,
          bool context, const float* g1w, const float* g1b, const float* g2w, const float* g2b)
      : context_(context),
        T_(T),
        S_(S),
        n_(n),
        k_(k),
        l_(l),
        sigma_(sigma),
        gate_(gate),
        g1b_(g1b, g1b + l),
        g2b_(g2b, g2b + k * n) {
    width = S * T * n;
    g1_.pack(g1w, n, l, 1, n);      // torch layout [l, n]
    g2_.pack(g2w, l, k * n, 1, l);  // torch layout [k·n, l]
  }

  // With sessions S, each session is a row of T positions (ops/session.h): rows·S rows, each with
  // its own generated kernel.
  size_t scratch_floats(int64_t rows) const override { return size_t(rows * S_ * (n_ + l_ + k_ * n_)); }

  void run(const Block& blk, const float* const* in, float* out, float* scratch) const override {
    const int64_t R = blk.rows * S_, rw = T_ * n_;
    const float* x = in[0];
    const float* len = in[1];
    float* z = scratch;
    float* h = z + R * n_;
    float* K = h + R * l_;
    for (int64_t b = 0; b < R && !context_; ++b) {  // z = mean of the valid positions (0 if empty)
      const int64_t L = seq_len(len[b], T_);
      float* zb = z + b * n_;
      const float* xb = x + b * rw;
      for (int64_t j = 0; j < n_; ++j) zb[j] = 0.0f;
      for (int64_t i = 0; i < L; ++i)
        for (int64_t j = 0; j < n_; ++j) zb[j] += xb[i * n_ + j];
      if (L > 1) {
        const float inv = 1.0f / static_cast<float>(L);
        for (int64_t j = 0; j < n_; ++j) zb[j] *= inv;
      }
    }
    const kernels::Act a = sigma_ == Sigma::Sigmoid ? kernels::Act::Sigmoid
                           : sigma_ == Sigma::Relu  ? kernels::Act::Relu
                                                    : kernels::Act::Identity;
    kernels::gemm(context_ ? in[2] : z, n_, R, g1_, g1b_.data(), a, h, l_, blk.threads);
    if (sigma_ == Sigma::Softmax) kernels::softmax_rows(h, R, l_, l_);
    kernels::gemm(h, l_, R, g2_, g2b_.data(), gate_, K, k_ * n_, blk.threads);
    for (int64_t b = 0; b < R; ++b) {
      const int64_t L = seq_len(len[b], T_);
      float* o = out + b * rw;
      kernels::dwconv_rows(x + b * rw, L, n_, K + b * k_ * n_, k_, o);
      std::memset(o + L * n_, 0, sizeof(float) * size_t((T_ - L) * n_));
    }
  }

 private:
  bool context_;  // the generator reads input 2 instead of the mean of x
  int64_t T_, S_, n_, k_, l_;
  Sigma sigma_;
  kernels::Act gate_;
  std::vector<float> g1b_, g2b_;
  kernels::PackedMatrix g1_, g2_;
};

}  // namespace

std::unique_ptr<Op> make_homo_dpo(const NodeBuilder& nb) {
  nb.expect_inputs(2, 3);
  const int64_t S = seq_sessions(nb, 1);
  const auto [T, n, k] = seq_conv_attrs(nb, S);
  const int64_t l = nb.attr_int("hidden", 1);
  const bool context = nb.in_widths().size() == 3;
  // hidden is the one size not tied to the input's width: bounded so its scratch (256 rows of h)
  // stays small whatever the file says.
  if (l > (int64_t(1) << 16)) nb.fail("attribute too large");
  // A context input holds one context per session (S·n; n for a plain sequence).
  if (context && nb.in_widths()[2] != S * n)
    nb.fail("input z (the generator's context) has width " + std::to_string(nb.in_widths()[2]) +
            ", expected " + (S > 1 ? "sessions*dim=" : "dim=") + std::to_string(S * n));
  const Sigma sigma = nb.attr_sigma();
  const kernels::Act gate = nb.attr_enum("gate", {"identity", "sigmoid"}, "identity") == "sigmoid"
                                ? kernels::Act::Sigmoid
                                : kernels::Act::Identity;
  const float* g1w = nb.param("g1_weight", {l, n});
  const float* g1b = nb.param("g1_bias", {l});
  const float* g2w = nb.param("g2_weight", {k * n, l});
  const float* g2b = nb.param("g2_bias", {k * n});
  return std::make_unique<HomoDpo>(T, S, n, k, l, sigma, gate, context, g1w, g1b, g2w, g2b);
}

}  // namespace dpn::ops
