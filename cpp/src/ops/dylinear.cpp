// `dylinear`: the feature-based dynamic linear layer (docs/format.md §5, §7;
// docs/architecture.md, "The Kronecker identity").
// W(z) is affine in h, so a block of rows is one ordinary GEMM against a static matrix packed at
// load, A' = [A_0; A_1; …; A_l; Bd], with the left panel [x, h_1·x, …, h_l·x, h] built per chunk.
// The per-row m×c weight is never built.
// A file with bfloat16 weights (precision="bf16") gets bfloat16 GEMMs (kernels/gemm.h): every A'
// is rounded to bfloat16 as it is packed, which rounds the static weight A_0 cut from g2's float32
// bias too (the bias tail b stays float32, in the epilogue); the left panels are rounded as built.
// A file with int8 weights and int8 arithmetic (precision="int8") gets int8 GEMMs the same way:
// every A' quantized per output column as packed (A_0 from g2's float32 bias too), the left panels
// quantized per row as built.
#include <algorithm>
#include <cstring>
#include <memory>

#include "kernels/gemm.h"
#include "kernels/kron.h"
#include "kernels/softmax.h"
#include "ops/op.h"

namespace dpn::ops {

namespace {

// Where a panel [x, h·x, …] is built before its GEMM, it is built for a chunk of rows at a time:
// at most kPanelFloats floats (scratch stays bounded for wide layers), but at least kMinChunkRows
// rows, because every chunk streams the whole packed weight once (8-row chunks made the prod config
// memory-bound). The AVX-512 path builds its panel blocks inside the GEMM and needs no chunking.
constexpr int64_t kPanelFloats = int64_t(1) << 20;
constexpr int64_t kMinChunkRows = 64;

struct Config {
  int64_t m = 0, c = 0, n = 0, l = 0, H = 1, r = 0;
  bool mlp = true, decomp = false, w0 = false;
  // How g1's weight, and g2's (then every A', P, Q, W0), are packed: bfloat16 / int8 where the file
  // stored them so and the load asked for those GEMMs.
  kernels::Weights g1w = kernels::Weights::F32, w = kernels::Weights::F32;
  Sigma sigma = Sigma::Identity;
  kernels::Act act = kernels::Act::Identity;
};

class DyLinear : public Op {
 public:
  explicit DyLinear(const Config& cfg) : c_(cfg) { width = cfg.c; }

  // --- load-time packing -------------------------------------------------------------------
  void pack_generator(const float* g1w, const float* g1b) {
    g1_.pack_as(c_.g1w, g1w, c_.n, c_.l, 1, c_.n);  // torch layout [l, n]: B(k, j) = g1w[j*n + k]
    g1b_.assign(g1b, g1b + c_.l);
  }

  // full form: one packed A'_g of K_g = (l+1)·mh + l rows × ch columns per head.
  void pack_full(const float* g2w, const float* g2b, int64_t P) {
    g2w_ = g2w;
    g2b_ = g2b;
    P_ = P;
    const int64_t mh = c_.m / c_.H, ch = c_.c / c_.H, l = c_.l, Kg = (l + 1) * mh + l;
    bias_.assign(g2b + (P - c_.c), g2b + P);
    heads_.resize(static_cast<size_t>(c_.H));
    std::vector<float> A(static_cast<size_t>(Kg * ch));
    for (int64_t g = 0; g < c_.H; ++g) {
      const int64_t off = g * mh * ch;
      for (int64_t k = 0; k <= l; ++k)
        for (int64_t i = 0; i < mh; ++i)
          for (int64_t j = 0; j < ch; ++j) {
            const int64_t t = off + i * ch + j;  // index into the generated vector
            A[size_t((k * mh + i) * ch + j)] = k == 0 ? g2b[t] : g2w[t * l + (k - 1)];
          }
      for (int64_t k = 0; k < l; ++k)
        for (int64_t j = 0; j < ch; ++j)
          A[size_t(((l + 1) * mh + k) * ch + j)] = g2w[(P - c_.c + g * ch + j) * l + k];
      heads_[size_t(g)].pack_as(c_.w, A.data(), Kg, ch, ch, 1);
    }
  }

  // decomp form: u = Pᵀx; v = phi(z)ᵀ u through A'_phi; y = [v, h, x] · [Q; Bd; W0] + bias.
  void pack_decomp(const float* g2w, const float* g2b, const float* Pm, const float* Q,
                   const float* W0) {
    const int64_t r = c_.r, l = c_.l, m = c_.m, c = c_.c;
    proj_.pack_as(c_.w, Pm, m, r, r, 1);
    std::vector<float> A(size_t((l + 1) * r * r));
    for (int64_t k = 0; k <= l; ++k)
      for (int64_t i = 0; i < r; ++i)
        for (int64_t j = 0; j < r; ++j) {
          const int64_t t = i * r + j;
          A[size_t((k * r + i) * r + j)] = k == 0 ? g2b[t] : g2w[t * l + (k - 1)];
        }
    phi_.pack_as(c_.w, A.data(), (l + 1) * r, r, r, 1);
    const int64_t K2 = r + l + (W0 ? m : 0);
    std::vector<float> B(size_t(K2 * c));
    for (int64_t i = 0; i < r; ++i)
      for (int64_t j = 0; j < c; ++j) B[size_t(i * c + j)] = Q[i * c + j];
    for (int64_t k = 0; k < l; ++k)
      for (int64_t j = 0; j < c; ++j) B[size_t((r + k) * c + j)] = g2w[(r * r + j) * l + k];
    if (W0)
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < c; ++j) B[size_t((r + l + i) * c + j)] = W0[i * c + j];
    out_.pack_as(c_.w, B.data(), K2, c, c, 1);
    bias_.assign(g2b + r * r, g2b + r * r + c);
  }

  // --- per call ----------------------------------------------------------------------------
  int64_t panel_width() const {
    return c_.decomp ? (c_.l + 1) * c_.r : (c_.l + 1) * (c_.m / c_.H) + c_.l;
  }
  int64_t chunk_rows(int64_t rows) const {
    if (!c_.decomp && !kernels::kron_needs_panel(heads_[0])) return rows;
    const int64_t w = std::max(panel_width(), out_.K);
    return std::min(rows, std::max(kMinChunkRows, kPanelFloats / std::max<int64_t>(1, w)));
  }
  // Floats of the first panel per chunk row (0 when the GEMM builds it itself).
  int64_t panel_floats_per_row() const {
    const kernels::PackedMatrix& B = c_.decomp ? phi_ : heads_[0];
    return kernels::kron_needs_panel(B) ? panel_width() : 0;
  }

  size_t scratch_floats(int64_t rows) const override {
    const int64_t cr = chunk_rows(rows);
    size_t s = size_t(rows * c_.l) + size_t(cr * panel_floats_per_row());  // h, panel
    if (c_.decomp) s += size_t(rows * c_.r) + size_t(cr * out_.K);         // u, second panel
    return s;
  }

  // h = σ(W1ᵀz + b1) for R rows into hb ([R, l]); the linear generator's h is z itself (l == n).
  const float* hidden(const float* z, int64_t R, float* hb, int threads) const {
    if (!c_.mlp) return z;
    kernels::Act a = c_.sigma == Sigma::Sigmoid ? kernels::Act::Sigmoid
                     : c_.sigma == Sigma::Relu  ? kernels::Act::Relu
                                                : kernels::Act::Identity;
    kernels::gemm(z, c_.n, R, g1_, g1b_.data(), a, hb, c_.l, threads);
    if (c_.sigma == Sigma::Softmax) kernels::softmax_rows(hb, R, c_.l, c_.l);
    return hb;
  }

  void run(const Block& blk, const float* const* in, float* out, float* scratch) const override {
    const int64_t R = blk.rows, m = c_.m, c = c_.c, l = c_.l;
    const float* x = in[0];
    // h for the whole block: [R, l].
    float* s = scratch;
    const float* h = hidden(in[1], R, s, blk.threads);
    if (c_.mlp) s += R * l;
    const int64_t cr = chunk_rows(R);
    float* panel = s;
    s += cr * panel_floats_per_row();
    if (!c_.decomp) {
      const int64_t mh = m / c_.H, ch = c / c_.H;
      for (int64_t r0 = 0; r0 < R; r0 += cr) {
        const int64_t rows = std::min(cr, R - r0);
        for (int64_t g = 0; g < c_.H; ++g) {
          kernels::gemm_kron(x + r0 * m + g * mh, m, mh, h + r0 * l, l, l, true, rows, heads_[size_t(g)],
                             bias_.data() + g * ch, c_.act, out + r0 * c + g * ch, c, panel,
                             blk.threads);
        }
      }
      return;
    }
    const int64_t r = c_.r, K2 = out_.K;
    float* u = s;
    s += R * r;
    float* panel2 = s;
    kernels::gemm(x, m, R, proj_, nullptr, kernels::Act::Identity, u, r, blk.threads);
    for (int64_t r0 = 0; r0 < R; r0 += cr) {
      const int64_t rows = std::min(cr, R - r0);
      // v = phiᵀ u lands in the first r columns of the second panel; then h and x follow it.
      kernels::gemm_kron(u + r0 * r, r, r, h + r0 * l, l, l, false, rows, phi_, nullptr,
                         kernels::Act::Identity, panel2, K2, panel, blk.threads);
      for (int64_t b = 0; b < rows; ++b) {
        float* p = panel2 + b * K2 + r;
        const float* hb = h + (r0 + b) * l;
        for (int64_t k = 0; k < l; ++k) p[k] = hb[k];
        if (c_.w0) {
          const float* xb = x + (r0 + b) * m;
          for (int64_t i = 0; i < m; ++i) p[l + i] = xb[i];
        }
      }
      kernels::gemm(panel2, K2, rows, out_, bias_.data(), c_.act, out + r0 * c, c, blk.threads);
    }
  }

  std::unique_ptr<SplitOp> split(const std::vector<char>& user_cols,
                                 const std::vector<char>& user_inputs) const override;

 private:
  friend class DyLinearSplit;
  Config c_;
  const float *g2w_ = nullptr, *g2b_ = nullptr;  // full form, in the file: what a split repacks
  int64_t P_ = 0;
  kernels::PackedMatrix g1_;
  std::vector<float> g1b_;
  std::vector<float> bias_;                   // static part of the dynamic bias (g2_bias tail)
  std::vector<kernels::PackedMatrix> heads_;  // full: A'_g per head
  kernels::PackedMatrix proj_, phi_, out_;    // decomp: P, A'_phi, [Q; Bd; W0]
};

// A dynamic layer whose context is user-only and whose x concatenates user and candidate columns:
// h once per user, and through the Kronecker identity the user columns' share
// A'_uᵀ([1; h] ⊗ x_u) + B_d h + b once per user; per candidate only A'_iᵀ([1; h] ⊗ x_i).
// part: [c + l] per user, its share then its h. Full form with one head.
// A user with many candidates gets more: their h is one, so A'_iᵀ([1; h] ⊗ x_i) = W_hᵀ x_i with
// W_h = A_0 + Σ_k h_k A_k [m_i × c] built once for the user (kernels::kron_collapse, a per-user
// weight: UserWeights), and each candidate runs a static GEMM of K = m_i instead of (l+1)·m_i.
class DyLinearSplit : public SplitOp {
 public:
  DyLinearSplit(const DyLinear& op, const std::vector<char>& user_cols) : op_(op) {
    const Config& c = op.c_;
    part_width = c.c + c.l;
    std::vector<int64_t> u, i;
    for (int64_t k = 0; k < c.m; ++k) (user_cols[size_t(k)] ? u : i).push_back(k);
    mu_ = int64_t(u.size());
    mi_ = int64_t(i.size());
    pack(u, true, au_);
    pack(i, false, ai_);
    if (!ai_.bf16 && !ai_.int8) {  // bfloat16 / int8 weights keep their Kronecker GEMM
      user_weight_floats = kernels::packed_size(mi_, c.c, ai_.nr);
      user_weight_min_rows = kCollapseMinRows;
    }
  }

  size_t scratch_floats(int64_t rows) const override {
    const int64_t panel = kernels::kron_needs_panel(au_) ? std::max(au_.K, ai_.K) : 0;
    return size_t(rows * op_.c_.l) + size_t(chunk(rows) * panel);
  }

  void run_user(const Block& blk, const float* xu, const float* const* in, float* part,
                float* scratch) const override {
    const Config& c = op_.c_;
    const int64_t R = blk.rows, ld = part_width;
    const float* h = op_.hidden(in[1], R, scratch, blk.threads);
    float* panel = scratch + R * c.l;
    const int64_t cr = chunk(R);
    for (int64_t r0 = 0; r0 < R; r0 += cr)
      kernels::gemm_kron(xu + r0 * mu_, mu_, mu_, h + r0 * c.l, c.l, c.l, true, std::min(cr, R - r0),
                         au_, op_.bias_.data(), kernels::Act::Identity, part + r0 * ld, ld, panel,
                         blk.threads);
    for (int64_t b = 0; b < R; ++b)
      for (int64_t k = 0; k < c.l; ++k) part[b * ld + c.c + k] = h[b * c.l + k];
    if (blk.weights)
      for (int64_t b = 0; b < R; ++b)
        if (float* W = blk.weights->of(blk.row0 + b))
          kernels::kron_collapse(ai_, mi_, c.l, h + b * c.l, W, blk.threads);
  }

  void run_candidate(const Block& blk, const float* xi, const float* const*, UserRows part, float* out,
                     float* scratch) const override {
    const Config& c = op_.c_;
    const int64_t R = blk.rows;
    // Runs of rows whose users have a collapsed weight (one run per user) or none (any users).
    auto weight = [&](int64_t b) { return blk.weights ? blk.weights->of(part.user[b]) : nullptr; };
    for (int64_t b0 = 0, b1; b0 < R; b0 = b1) {
      const float* W = weight(b0);
      for (b1 = b0 + 1; b1 < R && (W ? part.user[b1] == part.user[b0] : !weight(b1)); ++b1) {
      }
      if (W)
        kernels::gemm_packed(xi + b0 * mi_, mi_, b1 - b0, mi_, W, ai_, nullptr, kernels::Act::Identity,
                             out + b0 * c.c, c.c, blk.threads);
      else
        kron_rows(blk, xi, part, b0, b1, out, scratch);
    }
    add_part_and_act(out, part, R, c.c, c.act);
  }

 private:
  // A user with this many candidates or more gets a collapsed weight: building it reads A'_i once
  // ((l+1)·m_i·c floats, memory-bound), each candidate then saves l·m_i·c multiply-adds.
  static constexpr int64_t kCollapseMinRows = 16;

  // Rows [b0, b1) through the Kronecker GEMM with each row's user's h.
  void kron_rows(const Block& blk, const float* xi, UserRows part, int64_t b0, int64_t b1, float* out,
                 float* scratch) const {
    const Config& c = op_.c_;
    const int64_t R = b1 - b0, cr = chunk(R);
    float* h = scratch;  // each row's user's h, side by side for the Kronecker GEMM
    for (int64_t b = 0; b < R; ++b)
      std::memcpy(h + b * c.l, part.row(b0 + b) + c.c, sizeof(float) * size_t(c.l));
    float* panel = scratch + R * c.l;
    for (int64_t r0 = 0; r0 < R; r0 += cr)
      kernels::gemm_kron(xi + (b0 + r0) * mi_, mi_, mi_, h + r0 * c.l, c.l, c.l, false,
                         std::min(cr, R - r0), ai_, nullptr, kernels::Act::Identity,
                         out + (b0 + r0) * c.c, c.c, panel, blk.threads);
  }

  // A' restricted to the columns `cols` of x: rows [A_0; A_1; …; A_l] at those columns, then
  // (with_h) the dynamic bias rows B_d, in the layout gemm_kron's panel has.
  void pack(const std::vector<int64_t>& cols, bool with_h, kernels::PackedMatrix& dst) const {
    const Config& c = op_.c_;
    const int64_t l = c.l, mc = int64_t(cols.size()), K = (l + 1) * mc + (with_h ? l : 0);
    std::vector<float> A(size_t(K * c.c));
    for (int64_t k = 0; k <= l; ++k)
      for (int64_t i = 0; i < mc; ++i)
        for (int64_t j = 0; j < c.c; ++j) {
          const int64_t t = cols[size_t(i)] * c.c + j;
          A[size_t((k * mc + i) * c.c + j)] = k == 0 ? op_.g2b_[t] : op_.g2w_[t * l + (k - 1)];
        }
    if (with_h)
      for (int64_t k = 0; k < l; ++k)
        for (int64_t j = 0; j < c.c; ++j)
          A[size_t(((l + 1) * mc + k) * c.c + j)] = op_.g2w_[(op_.P_ - c.c + j) * l + k];
    dst.pack_as(c.w, A.data(), K, c.c, c.c, 1);
  }
  int64_t chunk(int64_t rows) const {
    const int64_t w = std::max(au_.K, ai_.K);
    if (!kernels::kron_needs_panel(au_)) return rows;
    return std::min(rows, std::max(kMinChunkRows, kPanelFloats / std::max<int64_t>(1, w)));
  }

  const DyLinear& op_;
  int64_t mu_ = 0, mi_ = 0;
  kernels::PackedMatrix au_, ai_;
};

std::unique_ptr<SplitOp> DyLinear::split(const std::vector<char>& user_cols,
                                         const std::vector<char>& user_inputs) const {
  // h must be the user's (a candidate context makes [1; h] ⊗ x_u per candidate), and the heads of
  // the full form would cut x into blocks of their own.
  if (c_.decomp || c_.H != 1 || !user_inputs[1] || count_user(user_cols) < kMinSplitColumns)
    return nullptr;
  return std::make_unique<DyLinearSplit>(*this, user_cols);
}

}  // namespace

std::unique_ptr<Op> make_dylinear(const NodeBuilder& nb) {
  nb.expect_inputs(2, 2);
  Config cfg;
  cfg.m = nb.attr_int("in", 1);
  cfg.c = nb.attr_int("out", 1);
  cfg.n = nb.attr_int("context", 1);
  cfg.mlp = nb.attr_enum("generator", {"mlp", "linear"}) == "mlp";
  cfg.l = nb.attr_int("hidden", 1);
  cfg.decomp = nb.attr_enum("form", {"full", "decomp"}) == "decomp";
  cfg.act = nb.attr_act();
  if (nb.in_widths()[0] != cfg.m)
    nb.fail("input x has width " + std::to_string(nb.in_widths()[0]) +
            ", attribute in=" + std::to_string(cfg.m));
  if (nb.in_widths()[1] != cfg.n)
    nb.fail("input z has width " + std::to_string(nb.in_widths()[1]) +
            ", attribute context=" + std::to_string(cfg.n));
  // Keep every generated size within a sane bound so the arithmetic below cannot overflow.
  const int64_t lim = int64_t(1) << 24;
  if (cfg.m > lim || cfg.c > lim || cfg.n > lim || cfg.l > lim) nb.fail("attribute too large");
  if (cfg.mlp) {
    cfg.sigma = nb.attr_sigma();
  } else if (cfg.l != cfg.n) {
    nb.fail("generator 'linear' needs hidden == context, got hidden=" + std::to_string(cfg.l) +
            ", context=" + std::to_string(cfg.n));
  }
  int64_t P = 0;
  if (!cfg.decomp) {
    cfg.H = nb.attr_int("heads", 1, 1);
    if (cfg.m % cfg.H != 0 || cfg.c % cfg.H != 0)
      nb.fail("heads=" + std::to_string(cfg.H) + " must divide in=" + std::to_string(cfg.m) +
              " and out=" + std::to_string(cfg.c));
    P = cfg.H * (cfg.m / cfg.H) * (cfg.c / cfg.H) + cfg.c;
  } else {
    if (nb.attr_int("heads", 1, 1) != 1) nb.fail("attribute 'heads' must be 1 with form 'decomp'");
    cfg.r = nb.attr_int("rank", 1);
    if (cfg.r > lim) nb.fail("attribute 'rank' too large");
    cfg.w0 = nb.attr_bool("w0", false);
    P = cfg.r * cfg.r + cfg.c;
  }
  if (P > (int64_t(1) << 40) / std::max<int64_t>(1, cfg.l)) nb.fail("generated weight too large");

  cfg.g1w = nb.gemm_weights("g1_weight");
  cfg.w = nb.gemm_weights("g2_weight");
  auto op = std::make_unique<DyLinear>(cfg);
  if (cfg.mlp) {
    const float* g1w = nb.param("g1_weight", {cfg.l, cfg.n});
    const float* g1b = nb.param("g1_bias", {cfg.l});
    op->pack_generator(g1w, g1b);
  }
  const float* g2w = nb.param("g2_weight", {P, cfg.l});
  const float* g2b = nb.param("g2_bias", {P});
  if (!cfg.decomp) {
    op->pack_full(g2w, g2b, P);
  } else {
    const float* Pm = nb.param("P", {cfg.m, cfg.r});
    const float* Q = nb.param("Q", {cfg.r, cfg.c});
    const float* W0 = cfg.w0 ? nb.param("W0", {cfg.m, cfg.c}) : nullptr;
    op->pack_decomp(g2w, g2b, Pm, Q, W0);
  }
  return op;
}

}  // namespace dpn::ops
