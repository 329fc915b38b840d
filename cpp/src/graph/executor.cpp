#include "graph/executor.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <mutex>
#include <thread>

#include "kernels/act.h"
#include "ops/id_policy.h"

namespace dpn::graph {

void validate_inputs(const std::vector<Field>& fields, const std::vector<FieldInput>& inputs,
                     int64_t batch) {
  if (batch < 0) throw Error("batch must be >= 0");
  if (inputs.size() != fields.size())
    throw Error("predict needs " + std::to_string(fields.size()) + " field inputs, got " +
                std::to_string(inputs.size()));
  for (size_t i = 0; i < fields.size(); ++i) {
    const Field& f = fields[i];
    const FieldInput& in = inputs[i];
    const std::string& name = f.info.name;
    if (in.rows != batch)
      throw InputError(name, "has " + std::to_string(in.rows) + " rows, expected " + std::to_string(batch));
    if (in.cols < 0) throw InputError(name, "negative column count");
    switch (f.info.kind) {
      case FieldKind::Sparse:
      case FieldKind::MultiHot: {
        if (f.info.kind == FieldKind::Sparse && in.cols != 1)
          throw InputError(name, "expected one id per row");
        if (f.info.kind == FieldKind::MultiHot && f.info.max_len > 0 && in.cols > f.info.max_len)
          throw InputError(name, "got " + std::to_string(in.cols) + " ids per row, more than max_len " +
                                     std::to_string(f.info.max_len));
        const int64_t n = batch * in.cols;
        if (n > 0 && !in.ids) throw InputError(name, "no ids given");
        if (f.policy == Policy::Error) {
          const bool multi = f.info.kind == FieldKind::MultiHot;
          for (int64_t k = 0; k < n; ++k) {
            const int64_t id = in.ids[k];
            if ((id < 0 || id >= f.info.vocab) && !(multi && id == -1)) ops::resolve_id(f, id);  // throws
          }
        }
        break;
      }
      case FieldKind::Dense: {
        if (in.cols != f.info.dim)
          throw InputError(name, "expected " + std::to_string(f.info.dim) + " values per row, got " +
                                     std::to_string(in.cols));
        const int64_t n = batch * in.cols;
        if (n > 0 && !in.values) throw InputError(name, "no values given");
        for (int64_t k = 0; k < n; ++k)
          if (!std::isfinite(in.values[k]))
            throw InputError(name, std::string(std::isnan(in.values[k]) ? "NaN" : "infinite") +
                                       " value at row " + std::to_string(k / in.cols) +
                                       "; dense values must be finite");
        break;
      }
    }
  }
}

namespace {

// Per-thread state: one buffer holding every value of a block, plus the ops' scratch.
struct Worker {
  const Graph& g;
  std::vector<int64_t> offset;  // per value, in floats, for a block of block_rows rows
  std::vector<float> buf;
  float* scratch = nullptr;

  Worker(const Graph& graph, int64_t block_rows) : g(graph) {
    int64_t total = 0;
    for (int64_t w : g.widths) {
      offset.push_back(total);
      total += w * block_rows;
    }
    size_t extra = 0;
    for (const Node& n : g.nodes) extra = std::max(extra, n.op->scratch_floats(block_rows));
    buf.assign(size_t(total) + extra, 0.0f);
    scratch = buf.data() + total;
  }

  void run_block(const std::vector<FieldInput>& inputs, int64_t row0, int64_t rows, float* out,
                 bool logits) {
    ops::Block blk{inputs, row0, rows};
    std::vector<const float*> in;
    for (const Node& n : g.nodes) {
      in.clear();
      for (int v : n.inputs) in.push_back(buf.data() + offset[size_t(v)]);
      n.op->run(blk, in.data(), buf.data() + offset[size_t(n.output)], scratch);
    }
    const float* y = buf.data() + offset[size_t(g.output)];
    for (int64_t b = 0; b < rows; ++b) out[row0 + b] = logits ? y[b] : kernels::sigmoid(y[b]);
  }
};

}  // namespace

void execute(const Graph& g, const std::vector<FieldInput>& inputs, int64_t batch, float* out,
             bool logits, int threads) {
  if (batch <= 0) return;
  // Small batches get a block of their own size, so a 1-row call allocates little.
  const int64_t block_rows = std::min(kBlockRows, batch);
  const int64_t blocks = (batch + block_rows - 1) / block_rows;
  const int64_t nthreads = std::max<int64_t>(1, std::min<int64_t>(threads, blocks));
  std::atomic<int64_t> next{0};
  std::exception_ptr error;
  std::mutex error_mu;
  auto work = [&]() {
    try {
      Worker w(g, block_rows);
      for (;;) {
        const int64_t blk = next.fetch_add(1);
        if (blk >= blocks) break;
        const int64_t row0 = blk * block_rows;
        w.run_block(inputs, row0, std::min(block_rows, batch - row0), out, logits);
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mu);
      if (!error) error = std::current_exception();
      next.store(blocks);  // stop the others early
    }
  };
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < nthreads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace dpn::graph
