#include "graph/executor.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
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

  void run_block(const std::vector<FieldInput>& inputs, int64_t row0, int64_t rows, float* out,
                 bool logits, int col_threads) {
    ops::Block blk{inputs, row0, rows, col_threads};
    std::vector<const float*> in;
    for (const Node& n : g.nodes) {
      in.clear();
      for (int v : n.inputs) in.push_back(buf.get() + offset[size_t(v)]);
      n.op->run(blk, in.data(), buf.get() + offset[size_t(n.output)], scratch);
    }
    const float* y = buf.get() + offset[size_t(g.output)];
    for (int64_t b = 0; b < rows; ++b) out[row0 + b] = logits ? y[b] : kernels::sigmoid(y[b]);
  }
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

void execute(const Graph& g, const std::vector<FieldInput>& inputs, int64_t batch, float* out,
             bool logits, int threads) {
  if (batch <= 0) return;
  const Plan p = plan(batch, threads, block_rows_for(g));
  if (p.row_threads <= 1) {
    // The calling thread runs every block; only GEMM column splits (if any) use other threads.
    Worker w(g, p.block_rows);
    for (int64_t blk = 0; blk < p.blocks; ++blk) {
      const int64_t row0 = blk * p.block_rows;
      w.run_block(inputs, row0, std::min(p.block_rows, batch - row0), out, logits, p.col_threads);
    }
    return;
  }
  // One lane per thread, each with its own Worker (scratch), taking blocks from a shared counter.
  std::atomic<int64_t> next{0};
  runtime::parallel_for(p.row_threads, p.row_threads, [&](int64_t) {
    Worker w(g, p.block_rows);
    for (int64_t blk; (blk = next.fetch_add(1)) < p.blocks;) {
      const int64_t row0 = blk * p.block_rows;
      w.run_block(inputs, row0, std::min(p.block_rows, batch - row0), out, logits, 1);
    }
  });
}

}  // namespace dpn::graph
