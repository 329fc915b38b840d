// `field_dylinear`: the field-based dynamic linear layer (docs/format.md §5;
// docs/architecture.md, "The Kronecker identity").
// Inputs are field-major rows: x [rows, t1·m], z [rows, t2·n]. Per (row, field) the op computes the
// aggregated context and h; the generated weights W_i are affine in h, so each field is one
// Kronecker GEMM against its static packed A'_i (grouped over fields; one GEMM over rows·t1 when the
// generator is shared). No per-row, per-field weight is ever built.
#include <algorithm>
#include <cstring>

#include "kernels/field_attn.h"
#include "kernels/field_mix.h"
#include "kernels/gemm.h"
#include "kernels/rows.h"
#include "kernels/softmax.h"
#include "ops/op.h"
#include "runtime/grain.h"
#include "runtime/thread_pool.h"

namespace dpn::ops {

namespace {

enum class Agg { Summation, Self, Attention, Concat };

// Rows per chunk: scratch stays bounded for wide layers, but each chunk streams every packed
// weight, so chunks are not made tiny.
constexpr int64_t kChunkFloats = int64_t(1) << 20;
constexpr int64_t kMinChunkRows = 16;
// Scratch of one row, checked at load; chunks of kMinChunkRows rows only while they fit in it, so a
// call's scratch never exceeds it (rows of a huge layer go one at a time).
constexpr int64_t kMaxScratchFloats = int64_t(1) << 24;

struct Config {
  int64_t t1 = 0, m = 0, c = 0, t2 = 0, n = 0;
  int64_t n_in = 0, l = 0, H = 1, G = 1, da = 0;
  Agg agg = Agg::Summation;
  bool dynamic = true, implicit = false, mlp = true, exclude_self = false;
  bool layernorm = false, residual = false;
  float eps = 0.0f;
  Sigma sigma = Sigma::Identity;
  kernels::Act act = kernels::Act::Identity;
};

class FieldDyLinear : public Op {
 public:
  explicit FieldDyLinear(const Config& cfg) : c_(cfg) { width = cfg.t1 * cfg.c; }

  // --- load-time packing -------------------------------------------------------------------
  // g1 of every group. With one context row for all fields (summation, concat) and per-field
  // generators, all fields' g1 are packed side by side: h for every field is one GEMM.
  void pack_g1(const float* g1w, const float* g1b) {
    const int64_t G = c_.G, l = c_.l, n = c_.n_in;
    g1b_.assign(g1b, g1b + G * l);
    if (one_context_row() && G > 1) {
      g1_.resize(1);
      g1_[0].pack(g1w, n, G * l, 1, n);  // [G·l, n] torch layout
      return;
    }
    g1_.resize(size_t(G));
    for (int64_t g = 0; g < G; ++g) g1_[size_t(g)].pack(g1w + g * l * n, n, l, 1, n);
  }

  // A'_{group, head} of K = (l+1)·mh + l rows × ch columns (the layout of `dylinear`).
  void pack_g2(const float* g2w_all, const float* g2b_all) {
    const int64_t mh = c_.m / c_.H, ch = c_.c / c_.H, l = c_.l, Kg = (l + 1) * mh + l;
    const int64_t P = c_.H * mh * ch + c_.c;
    A_.resize(size_t(c_.G * c_.H));
    bias_.resize(size_t(c_.G * c_.c));
    std::vector<float> A(size_t(Kg * ch));
    for (int64_t grp = 0; grp < c_.G; ++grp) {
      const float* g2w = g2w_all + grp * P * l;
      const float* g2b = g2b_all + grp * P;
      std::copy(g2b + (P - c_.c), g2b + P, bias_.begin() + grp * c_.c);
      for (int64_t g = 0; g < c_.H; ++g) {
        const int64_t off = g * mh * ch;
        for (int64_t k = 0; k <= l; ++k)
          for (int64_t i = 0; i < mh; ++i)
            for (int64_t j = 0; j < ch; ++j) {
              const int64_t t = off + i * ch + j;
              A[size_t((k * mh + i) * ch + j)] = k == 0 ? g2b[t] : g2w[t * l + (k - 1)];
            }
        for (int64_t k = 0; k < l; ++k)
          for (int64_t j = 0; j < ch; ++j)
            A[size_t(((l + 1) * mh + k) * ch + j)] = g2w[(P - c_.c + g * ch + j) * l + k];
        A_[size_t(grp * c_.H + g)].pack(A.data(), Kg, ch, ch, 1);
      }
    }
  }

  void pack_attention(const float* w, const float* b, const float* q) {
    att_.pack(w, c_.n, c_.da, 1, c_.n);  // [da, n] torch layout
    att_b_.assign(b, b + c_.da);
    query_.pack(q, c_.da, c_.t1, 1, c_.da);  // scores = u · qᵀ, q [t1, da]
  }

  void set_implicit(const float* fw, const float* lw, const float* bias) {
    fw_ = fw;
    wl_.pack(lw, c_.m, c_.c, c_.c, 1);  // W_l [m, c] row-major
    imp_bias_ = bias;
  }
  void set_norm(const float* w, const float* b) {
    ln_w_ = w;
    ln_b_ = b;
  }

  // --- per call ----------------------------------------------------------------------------
  bool one_context_row() const {
    return (c_.agg == Agg::Summation && !c_.exclude_self) || c_.agg == Agg::Concat;
  }
  // One Kronecker GEMM over rows·t1 (shared generator, h per (row, field) in [rows·t1, l]).
  bool single_gemm() const { return c_.G == 1 && !one_context_row(); }
  int64_t ctx_floats_per_row() const {
    if (!c_.dynamic || c_.agg == Agg::Concat || c_.agg == Agg::Self) return 0;
    return one_context_row() ? c_.n : c_.t1 * c_.n;
  }
  int64_t h_floats_per_row() const {
    if (!c_.dynamic || !c_.mlp) return 0;
    return one_context_row() && c_.G == 1 ? c_.l : c_.t1 * c_.l;
  }
  int64_t att_floats_per_row() const {
    return c_.dynamic && c_.agg == Agg::Attention ? c_.t2 * (c_.da + c_.t1) : 0;
  }
  int64_t panel_floats_per_row() const {
    if (!c_.dynamic || !kernels::kron_needs_panel(A_[0])) return 0;
    return (single_gemm() ? c_.t1 : 1) * A_[0].K;
  }
  int64_t imp_floats_per_row() const { return c_.implicit ? c_.t1 * c_.c : 0; }
  int64_t floats_per_row() const {
    return ctx_floats_per_row() + h_floats_per_row() + att_floats_per_row() + panel_floats_per_row() +
           imp_floats_per_row();
  }
  int64_t chunk_rows(int64_t rows) const {
    const int64_t per = std::max<int64_t>(1, floats_per_row());
    const int64_t min_rows = per * kMinChunkRows <= kMaxScratchFloats ? kMinChunkRows : 1;
    return std::max<int64_t>(1, std::min(rows, std::max(min_rows, kChunkFloats / per)));
  }
  size_t scratch_floats(int64_t rows) const override {
    return size_t(chunk_rows(rows) * floats_per_row());
  }

  void run(const Block& blk, const float* const* in, float* out, float* scratch) const override {
    const int64_t R = blk.rows, cr = chunk_rows(R);
    const int64_t xw = c_.t1 * c_.m, zw = c_.t2 * c_.n, yw = c_.t1 * c_.c;
    for (int64_t r0 = 0; r0 < R; r0 += cr) {
      const int64_t rows = std::min(cr, R - r0);
      run_chunk(blk, in[0] + r0 * xw, in[1] + r0 * zw, rows, out + r0 * yw, scratch);
    }
  }

 private:
  kernels::Act sigma_act() const {
    return c_.sigma == Sigma::Sigmoid ? kernels::Act::Sigmoid
           : c_.sigma == Sigma::Relu  ? kernels::Act::Relu
                                      : kernels::Act::Identity;
  }

  // Where the generator reads: (pointer, leading dimension, per-field offset) of c_i per row.
  struct View {
    const float* p;
    int64_t ld, step;
  };

  View context(const float* z, int64_t rows, float*& s, int threads) const {
    const int64_t t1 = c_.t1, t2 = c_.t2, n = c_.n, zw = t2 * n;
    switch (c_.agg) {
      case Agg::Concat: return {z, zw, 0};
      case Agg::Self: return {z, zw, n};
      case Agg::Summation: {
        float* ctx = s;
        s += rows * ctx_floats_per_row();
        const float inv = c_.exclude_self ? 1.0f / float(t2 - 1) : 1.0f / float(t2);
        for (int64_t b = 0; b < rows; ++b) {
          const float* zb = z + b * zw;
          float* o = ctx + b * (c_.exclude_self ? t1 * n : n);
          for (int64_t k = 0; k < n; ++k) o[k] = zb[k];
          for (int64_t j = 1; j < t2; ++j)
            for (int64_t k = 0; k < n; ++k) o[k] += zb[j * n + k];
          if (c_.exclude_self) {
            // c_i = (Σ_j z_j − z_i) / (t2 − 1); field 0's slot holds the sum until the end.
            for (int64_t i = t1 - 1; i >= 0; --i)
              for (int64_t k = 0; k < n; ++k) o[i * n + k] = (o[k] - zb[i * n + k]) * inv;
          } else {
            for (int64_t k = 0; k < n; ++k) o[k] *= inv;
          }
        }
        return c_.exclude_self ? View{ctx, t1 * n, n} : View{ctx, n, 0};
      }
      case Agg::Attention: {
        float* ctx = s;
        s += rows * ctx_floats_per_row();
        float* u = s;
        float* sc = u + rows * t2 * c_.da;
        s += rows * att_floats_per_row();
        kernels::gemm(z, n, rows * t2, att_, att_b_.data(), kernels::Act::Tanh, u, c_.da, threads);
        kernels::gemm(u, c_.da, rows * t2, query_, nullptr, kernels::Act::Identity, sc, t1, threads);
        kernels::field_attention(sc, z, rows, t1, t2, n, ctx);
        return {ctx, t1 * n, n};
      }
    }
    return {z, zw, 0};
  }

  void run_chunk(const Block& blk, const float* x, const float* z, int64_t rows, float* out,
                 float* s) const {
    const int64_t t1 = c_.t1, m = c_.m, c = c_.c, yw = t1 * c;
    const bool post = c_.implicit || c_.layernorm;
    const kernels::Act kact = post ? kernels::Act::Identity : c_.act;
    if (c_.dynamic) {
      const View cv = context(z, rows, s, blk.threads);
      // h: (pointer, ld, per-field offset).
      View hv = cv;
      if (c_.mlp) {
        const int64_t l = c_.l;
        float* h = s;
        s += rows * h_floats_per_row();
        const kernels::Act a = sigma_act();
        if (one_context_row()) {
          // One GEMM: all fields' g1 side by side (or the shared g1).
          kernels::gemm(cv.p, cv.ld, rows, g1_[0], g1b_.data(), a, h, c_.G * l, blk.threads);
          hv = {h, c_.G * l, c_.G > 1 ? l : 0};
        } else if (c_.G == 1) {
          kernels::gemm(cv.p, c_.n_in, rows * t1, g1_[0], g1b_.data(), a, h, l, blk.threads);
          hv = {h, t1 * l, l};
        } else {
          for (int64_t i = 0; i < t1; ++i)
            kernels::gemm(cv.p + i * cv.step, cv.ld, rows, g1_[size_t(i)], g1b_.data() + i * l, a,
                          h + i * l, t1 * l, blk.threads);
          hv = {h, t1 * l, l};
        }
        if (c_.sigma == Sigma::Softmax) {
          const int64_t groups = hv.step ? t1 : 1;
          kernels::softmax_rows(h, rows * groups, l, l);
        }
      }
      float* panel = s;
      s += rows * panel_floats_per_row();
      const int64_t mh = m / c_.H, ch = c / c_.H, l = c_.l;
      if (single_gemm()) {
        // [rows, t1·m] is [rows·t1, m]; h per (row, field) is [rows·t1, l] (ld l: step == l).
        for (int64_t g = 0; g < c_.H; ++g)
          kernels::gemm_kron(x + g * mh, m, mh, hv.p, l, l, true, rows * t1, A_[size_t(g)],
                             bias_.data() + g * ch, kact, out + g * ch, c, panel, blk.threads);
      } else {
        auto field = [&](int64_t i, int threads) {
          const int64_t grp = c_.G > 1 ? i : 0;
          for (int64_t g = 0; g < c_.H; ++g)
            kernels::gemm_kron(x + i * m + g * mh, t1 * m, mh, hv.p + i * hv.step, hv.ld, l, true, rows,
                               A_[size_t(grp * c_.H + g)], bias_.data() + grp * c + g * ch, kact,
                               out + i * c + g * ch, yw, panel, threads);
        };
        // Small batches (the executor hands this block `threads` for column splits): the fields'
        // GEMMs are independent and each too small to split, so split the fields instead. Only
        // where the GEMM builds its own left panel (one shared `panel` scratch otherwise).
        const int64_t parts =
            runtime::column_parts(rows, A_[0].K * c * t1, std::min<int64_t>(blk.threads, t1));
        if (parts > 1 && !kernels::kron_needs_panel(A_[0])) {
          runtime::parallel_for(parts, int(parts), [&](int64_t p) {
            for (int64_t i = t1 * p / parts; i < t1 * (p + 1) / parts; ++i) field(i, 1);
          });
        } else {
          for (int64_t i = 0; i < t1; ++i) field(i, blk.threads);
        }
      }
    }
    if (c_.implicit) {
      // W_f X W_l: T = X W_l as one GEMM over rows·t1, then per row Y_i += Σ_k W_f[i,k] T_k.
      float* T = s;
      s += rows * imp_floats_per_row();
      kernels::gemm(x, m, rows * t1, wl_, nullptr, kernels::Act::Identity, T, c, blk.threads);
      kernels::field_mix(fw_, T, rows, t1, c, imp_bias_, c_.dynamic, out);
    }
    if (c_.layernorm) kernels::layernorm_rows(out, rows * t1, c, ln_w_, ln_b_, c_.eps, out);
    if (post) kernels::act_inplace(out, rows * yw, c_.act);
    if (c_.residual)
      for (int64_t k = 0; k < rows * yw; ++k) out[k] += x[k];
  }

  Config c_;
  std::vector<kernels::PackedMatrix> g1_;
  std::vector<float> g1b_;
  std::vector<kernels::PackedMatrix> A_;  // per (group, head)
  std::vector<float> bias_;               // static part of each group's dynamic bias
  kernels::PackedMatrix att_, query_, wl_;
  std::vector<float> att_b_;
  const float* fw_ = nullptr;
  const float* imp_bias_ = nullptr;
  const float* ln_w_ = nullptr;
  const float* ln_b_ = nullptr;
};

}  // namespace

std::unique_ptr<Op> make_field_dylinear(const NodeBuilder& nb) {
  nb.expect_inputs(2, 2);
  Config cfg;
  const int64_t lim = int64_t(1) << 20;
  cfg.t1 = nb.attr_int("fields", 1);
  cfg.m = nb.attr_int("in", 1);
  cfg.c = nb.attr_int("out", 1);
  cfg.t2 = nb.attr_int("context_fields", 1);
  cfg.n = nb.attr_int("context", 1);
  for (int64_t v : {cfg.t1, cfg.m, cfg.c, cfg.t2, cfg.n})
    if (v > lim) nb.fail("attribute too large");
  if (cfg.t1 * cfg.m > lim || cfg.t1 * cfg.c > lim || cfg.t2 * cfg.n > lim)
    nb.fail("fields × width too large");
  if (nb.in_widths()[0] != cfg.t1 * cfg.m)
    nb.fail("input x has width " + std::to_string(nb.in_widths()[0]) +
            ", attributes fields × in = " + std::to_string(cfg.t1 * cfg.m));
  if (nb.in_widths()[1] != cfg.t2 * cfg.n)
    nb.fail("input z has width " + std::to_string(nb.in_widths()[1]) +
            ", attributes context_fields × context = " + std::to_string(cfg.t2 * cfg.n));
  const std::string agg = nb.attr_enum("aggregation", {"summation", "self", "attention", "concat"});
  cfg.agg = agg == "self"        ? Agg::Self
            : agg == "attention" ? Agg::Attention
            : agg == "concat"    ? Agg::Concat
                                 : Agg::Summation;
  cfg.dynamic = nb.attr_bool("dynamic", true);
  cfg.implicit = nb.attr_bool("implicit", false);
  if (!cfg.dynamic && !cfg.implicit) nb.fail("at least one of 'dynamic' and 'implicit' must be true");
  cfg.layernorm = nb.attr_enum("norm", {"none", "layernorm"}, "none") == "layernorm";
  if (cfg.layernorm) {
    const double eps = nb.attr_number("eps");
    if (!(eps > 0.0) || !(eps < 1e30)) nb.fail("attribute 'eps' must be a finite float > 0");
    cfg.eps = static_cast<float>(eps);
  }
  cfg.residual = nb.attr_bool("residual", false);
  if (cfg.residual && cfg.m != cfg.c)
    nb.fail("attribute 'residual' needs in == out, got in=" + std::to_string(cfg.m) +
            ", out=" + std::to_string(cfg.c));
  cfg.act = nb.attr_act();
  std::unique_ptr<FieldDyLinear> op;

  if (cfg.dynamic) {
    if ((cfg.agg == Agg::Self) && cfg.t1 != cfg.t2)
      nb.fail("aggregation 'self' needs fields == context_fields, got " + std::to_string(cfg.t1) +
              " and " + std::to_string(cfg.t2));
    cfg.exclude_self = nb.attr_bool("exclude_self", false);
    if (cfg.exclude_self && (cfg.agg != Agg::Summation || cfg.t1 != cfg.t2 || cfg.t2 < 2))
      nb.fail(
          "attribute 'exclude_self' needs aggregation 'summation' and fields == "
          "context_fields >= 2");
    cfg.n_in = cfg.agg == Agg::Concat ? cfg.t2 * cfg.n : cfg.n;
    cfg.mlp = nb.attr_enum("generator", {"mlp", "linear"}) == "mlp";
    cfg.l = nb.attr_int("hidden", 1);
    if (cfg.l > lim) nb.fail("attribute 'hidden' too large");
    if (cfg.mlp) {
      cfg.sigma = nb.attr_sigma();
    } else if (cfg.l != cfg.n_in) {
      nb.fail("generator 'linear' needs hidden == its input width (" + std::to_string(cfg.n_in) +
              "), got hidden=" + std::to_string(cfg.l));
    }
    cfg.H = nb.attr_int("heads", 1, 1);
    if (cfg.m % cfg.H != 0 || cfg.c % cfg.H != 0)
      nb.fail("heads=" + std::to_string(cfg.H) + " must divide in=" + std::to_string(cfg.m) +
              " and out=" + std::to_string(cfg.c));
    cfg.G = nb.attr_bool("shared", false) ? 1 : cfg.t1;
    const int64_t P = cfg.H * (cfg.m / cfg.H) * (cfg.c / cfg.H) + cfg.c;
    if (P > (int64_t(1) << 36) / std::max<int64_t>(1, cfg.l * cfg.G))
      nb.fail("generated weights too large");
    if (cfg.agg == Agg::Attention) {
      cfg.da = nb.attr_int("attention_hidden", 1);
      if (cfg.da > lim) nb.fail("attribute 'attention_hidden' too large");
    }
    op = std::make_unique<FieldDyLinear>(cfg);
    if (cfg.mlp) {
      if (cfg.n_in * cfg.l * cfg.G > (int64_t(1) << 36)) nb.fail("generator too large");
      const float* g1w = nb.param("g1_weight", {cfg.G, cfg.l, cfg.n_in});
      const float* g1b = nb.param("g1_bias", {cfg.G, cfg.l});
      op->pack_g1(g1w, g1b);
    }
    const float* g2w = nb.param("g2_weight", {cfg.G, P, cfg.l});
    const float* g2b = nb.param("g2_bias", {cfg.G, P});
    op->pack_g2(g2w, g2b);
    if (cfg.agg == Agg::Attention)
      op->pack_attention(nb.param("att_weight", {cfg.da, cfg.n}), nb.param("att_bias", {cfg.da}),
                         nb.param("att_query", {cfg.t1, cfg.da}));
  }
  if (!op) op = std::make_unique<FieldDyLinear>(cfg);
  if (cfg.implicit)
    op->set_implicit(nb.param("field_weight", {cfg.t1, cfg.t1}),
                     nb.param("feature_weight", {cfg.m, cfg.c}),
                     cfg.dynamic ? nullptr : nb.param("bias", {cfg.c}));
  if (cfg.layernorm) op->set_norm(nb.param("ln_weight", {cfg.c}), nb.param("ln_bias", {cfg.c}));
  // Per-row scratch is allocated per predict: refuse sizes no batch could hold, at load.
  if (op->floats_per_row() > kMaxScratchFloats)
    nb.fail("scratch per row too large (" + std::to_string(op->floats_per_row()) + " floats)");
  return op;
}

}  // namespace dpn::ops
