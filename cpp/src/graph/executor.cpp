#include "graph/executor.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <exception>
#include <memory>

#include "kernels/act.h"
#include "runtime/grain.h"
#include "runtime/thread_pool.h"

namespace dpn::graph {

namespace {

// Per-thread state: one buffer holding every value of a block, plus the ops' scratch.
struct Worker {
  const Graph& g;
  std::vector<int64_t> offset;  // per value, in floats, for a block of block_rows rows
  // Not zero-filled: every op writes all of its output (zeroing cost ~4% of a small-layer call).
  std::unique_ptr<float[]> buf;
  float* scratch = nullptr;

  Worker(const Graph& graph, int64_t block_rows) : g(graph) {
    int64_t total = 0;
    for (int64_t w : g.widths) {
      offset.push_back(total);
      total += w * block_rows;
    }
    size_t extra = 0;
    for (const Node& n : g.nodes) extra = std::max(extra, n.op->scratch_floats(block_rows));
    buf.reset(new float[size_t(total) + extra]);
    scratch = buf.get() + total;
  }

  // Runs the nodes of one block whose `skip` entry is 0 (every node when skip is null); a node
  // for which special(k, blk, in, out) returns true was run by it instead.
  template <class Special>
  void run_nodes(const std::vector<FieldInput>& inputs, int64_t row0, int64_t rows, int col_threads,
                 const char* skip, Special&& special) {
    ops::Block blk{inputs, row0, rows, col_threads};
    std::vector<const float*> in;
    for (size_t k = 0; k < g.nodes.size(); ++k) {
      if (skip && skip[k]) continue;
      const Node& n = g.nodes[k];
      in.clear();
      for (int v : n.inputs) in.push_back(value(v));
      if (!special(k, blk, in.data(), value(n.output)))
        n.op->run(blk, in.data(), value(n.output), scratch);
    }
  }
  void run_nodes(const std::vector<FieldInput>& inputs, int64_t row0, int64_t rows, int col_threads,
                 const char* skip) {
    run_nodes(inputs, row0, rows, col_threads, skip,
              [](size_t, const ops::Block&, const float* const*, float*) { return false; });
  }

  // The values `parts` side by side for the block's `rows` rows: a concat's inputs of one kind.
  void concat(const std::vector<int>& parts, int64_t rows, float* dst, int64_t width) {
    int64_t col = 0;
    for (int v : parts) {
      const int64_t w = g.widths[size_t(v)];
      const float* src = value(v);
      for (int64_t b = 0; b < rows; ++b)
        std::memcpy(dst + b * width + col, src + b * w, sizeof(float) * size_t(w));
      col += w;
    }
  }

  float* value(int v) { return buf.get() + offset[size_t(v)]; }
};

}  // namespace

// How a call is split between `threads`: by rows when every thread gets at least
// runtime::kMinRowsPerThread rows (blocks of at most kBlockRows, a multiple of the thread count so no
// thread idles at the end); otherwise one block on the calling thread whose GEMMs split their output
// columns (small batches, where the weights, not the rows, are the work).
struct Plan {
  int64_t block_rows, blocks;
  int row_threads, col_threads;
};

// max_rows: kBlockRows, or fewer for a graph whose rows are wide (block_rows_for).
Plan plan(int64_t batch, int threads, int64_t max_rows) {
  if (threads <= 1 || batch < runtime::kMinRowsPerThread * threads) {
    const int64_t br = std::min(max_rows, batch);
    return {br, (batch + br - 1) / br, 1, std::max(1, threads)};
  }
  int64_t blocks = (batch + max_rows - 1) / max_rows;
  blocks = (blocks + threads - 1) / threads * threads;
  const int64_t br = (batch + blocks - 1) / blocks;
  return {br, (batch + br - 1) / br, threads, 1};
}

// Rows per block: kBlockRows, fewer when one row's values are wide (long sequences), so a worker's
// value buffer stays near kBlockFloats (one row at least; Graph::row_floats is bounded at load).
int64_t block_rows_for(const Graph& g) {
  constexpr int64_t kBlockFloats = int64_t(1) << 24;
  return std::clamp<int64_t>(kBlockFloats / std::max<int64_t>(1, g.row_floats), 1, kBlockRows);
}

namespace {

// Runs `rows` rows of `inputs` through the nodes not skipped, one block at a time on `threads`
// threads as plan() splits them. fn(worker, row0, n) runs on the block's thread after its nodes:
// it reads the block's results (and, for the request path, fills values the block did not compute
// before running the nodes itself; see execute_request).
template <class Fn>
void run_blocks(const Graph& g, int64_t rows, int threads, Fn&& fn) {
  const Plan p = plan(rows, threads, block_rows_for(g));
  if (p.row_threads <= 1) {
    // The calling thread runs every block; only GEMM column splits (if any) use other threads.
    Worker w(g, p.block_rows);
    for (int64_t blk = 0; blk < p.blocks; ++blk) {
      const int64_t row0 = blk * p.block_rows;
      fn(w, row0, std::min(p.block_rows, rows - row0), p.col_threads);
    }
    return;
  }
  // One lane per thread, each with its own Worker (scratch), taking blocks from a shared counter.
  std::atomic<int64_t> next{0};
  runtime::parallel_for(p.row_threads, p.row_threads, [&](int64_t) {
    Worker w(g, p.block_rows);
    for (int64_t blk; (blk = next.fetch_add(1)) < p.blocks;) {
      const int64_t row0 = blk * p.block_rows;
      fn(w, row0, std::min(p.block_rows, rows - row0), 1);
    }
  });
}

void write_scores(Worker& w, int64_t row0, int64_t rows, float* out, bool logits) {
  const float* y = w.value(w.g.output);
  for (int64_t b = 0; b < rows; ++b) out[row0 + b] = logits ? y[b] : kernels::sigmoid(y[b]);
}

}  // namespace

void execute(const Graph& g, const std::vector<FieldInput>& inputs, int64_t batch, float* out,
             bool logits, int threads) {
  if (batch <= 0) return;
  run_blocks(g, batch, threads, [&](Worker& w, int64_t row0, int64_t n, int col_threads) {
    w.run_nodes(inputs, row0, n, col_threads, nullptr);
    write_scores(w, row0, n, out, logits);
  });
}

void execute_request(const Graph& g, const SharedPlan& sp, const std::vector<FieldInput>& inputs,
                     const std::vector<FieldInput>& shared, const int64_t* user_of_row, int64_t batch,
                     int64_t users, float* out, bool logits, int threads) {
  if (batch <= 0) return;
  // Step 1: the user-only nodes on the users' rows; the boundary values they give, and each
  // split's user part, are kept whole ([users, width] each: the request's users, not a block's).
  const size_t nb = sp.boundary.size();
  std::vector<int64_t> width(nb + sp.splits.size()), at(width.size() + 1, 0);
  for (size_t k = 0; k < width.size(); ++k) {
    width[k] = k < nb ? g.widths[size_t(sp.boundary[k])] : sp.splits[k - nb].op->part_width;
    at[k + 1] = at[k] + users * width[k];
  }
  std::unique_ptr<float[]> kept(new float[size_t(std::max<int64_t>(1, at.back()))]);
  // Per-user weights the splits can build (SplitOp::user_weight_floats): for the users with enough
  // candidates to pay for one, in order, while the request's total stays within kMaxWeightFloats.
  constexpr int64_t kMaxWeightFloats = int64_t(1) << 23;  // 32 MiB per call
  std::vector<int64_t> cands;  // candidates per user, counted once some split can use them
  std::vector<std::vector<int64_t>> slots(sp.splits.size());
  std::vector<ops::UserWeights> weights(sp.splits.size());
  std::vector<size_t> weights_at(sp.splits.size(), 0);
  int64_t weight_floats = 0;
  for (size_t k = 0; k < sp.splits.size(); ++k) {
    const ops::SplitOp& op = *sp.splits[k].op;
    if (op.user_weight_floats <= 0) continue;
    if (cands.empty()) {
      cands.assign(size_t(users), 0);
      for (int64_t b = 0; b < batch; ++b) ++cands[size_t(user_of_row[b])];
    }
    slots[k].assign(size_t(users), -1);
    weights_at[k] = size_t(weight_floats);
    int64_t n = 0;
    for (int64_t u = 0; u < users; ++u)
      if (cands[size_t(u)] >= op.user_weight_min_rows &&
          weight_floats + op.user_weight_floats <= kMaxWeightFloats) {
        slots[k][size_t(u)] = n++;
        weight_floats += op.user_weight_floats;
      }
    weights[k] = ops::UserWeights{nullptr, op.user_weight_floats, slots[k].data()};
  }
  std::unique_ptr<float[]> weight_arena(weight_floats ? new float[size_t(weight_floats)] : nullptr);
  for (size_t k = 0; k < sp.splits.size(); ++k)
    if (!slots[k].empty()) weights[k].base = weight_arena.get() + weights_at[k];
  // A split's own buffers per block: its concat part (by columns) and its scratch.
  auto split_buffer = [&](const Split& s, int64_t n) {
    const int64_t cols = s.op->by_columns ? std::max(s.mu, s.mi) : 0;
    return std::vector<float>(size_t(n * cols) + s.op->scratch_floats(n));
  };
  run_blocks(g, users, threads, [&](Worker& w, int64_t row0, int64_t n, int col_threads) {
    w.run_nodes(shared, row0, n, col_threads, sp.candidate.data());
    for (size_t k = 0; k < nb; ++k)
      std::memcpy(kept.get() + at[k] + row0 * width[k], w.value(sp.boundary[k]),
                  sizeof(float) * size_t(n * width[k]));
    for (size_t k = 0; k < sp.splits.size(); ++k) {
      const Split& s = sp.splits[k];
      std::vector<float> buf = split_buffer(s, n);
      const int64_t cols = s.op->by_columns ? s.mu : 0;
      if (cols) w.concat(s.user_parts, n, buf.data(), s.mu);
      const Node& node = g.nodes[s.node];
      std::vector<const float*> in;
      for (int v : node.inputs) in.push_back(w.value(v));
      const ops::UserWeights* uw = slots[k].empty() ? nullptr : &weights[k];
      s.op->run_user(ops::Block{shared, row0, n, col_threads, uw}, cols ? buf.data() : nullptr,
                     in.data(), kept.get() + at[nb + k] + row0 * width[nb + k], buf.data() + n * cols);
    }
  });
  // Step 2: the candidate rows. Each block first gathers its rows' user values (row b reads its
  // user's row), then runs the nodes that depend on a candidate field; splits read their users'
  // parts in place.
  run_blocks(g, batch, threads, [&](Worker& w, int64_t row0, int64_t n, int col_threads) {
    for (size_t k = 0; k < nb; ++k) {
      const int64_t wd = width[k];
      float* dst = w.value(sp.boundary[k]);
      for (int64_t b = 0; b < n; ++b)
        std::memcpy(dst + b * wd, kept.get() + at[k] + user_of_row[row0 + b] * wd,
                    sizeof(float) * size_t(wd));
    }
    w.run_nodes(inputs, row0, n, col_threads, sp.skip2.data(),
                [&](size_t node, const ops::Block& blk, const float* const* in, float* y) {
                  if (sp.split_of[node] < 0) return false;
                  const size_t k = size_t(sp.split_of[node]);
                  const Split& s = sp.splits[k];
                  std::vector<float> buf = split_buffer(s, n);
                  const int64_t cols = s.op->by_columns ? s.mi : 0;
                  if (cols) w.concat(s.cand_parts, n, buf.data(), s.mi);
                  const ops::UserRows part{kept.get() + at[nb + k], width[nb + k], user_of_row + row0};
                  const ops::Block b{blk.inputs, blk.row0, blk.rows, blk.threads,
                                     slots[k].empty() ? nullptr : &weights[k]};
                  s.op->run_candidate(b, cols ? buf.data() : nullptr, in, part, y,
                                      buf.data() + n * cols);
                  return true;
                });
    write_scores(w, row0, n, out, logits);
  });
}

}  // namespace dpn::graph
