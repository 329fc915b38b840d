// The parallel grain: when a call's work is worth splitting between threads, by rows or by
// output columns. Defined once here for the executor (rows), the GEMM (column panels) and the ops
// that split independent GEMMs (fields).
#pragma once

#include <algorithm>
#include <cstdint>

namespace dpn::runtime {

// A batch is split by rows when every thread gets at least this many rows; smaller batches run on
// the calling thread and split their GEMMs' output columns instead (the weights are the work).
constexpr int64_t kMinRowsPerThread = 32;

// Each extra thread of a column split must get at least this many multiply-adds (~20 µs of FMAs):
// waking a sleeping worker costs ~10-20 µs, so smaller splits make a call slower, not faster
// (ml1m at batch 16 did).
constexpr int64_t kMinMacsPerPart = int64_t(1) << 20;

// Below ~8 rows a GEMM streams its weights from cache or memory rather than computing: a row then
// costs about what 8 rows cost, so work is counted for at least this many rows (criteo at batch 1
// gains from 2 threads).
constexpr int64_t kMinCountedRows = 8;

// How many parts (>= 1, <= max_parts) to split `rows` rows of `macs_per_row` multiply-adds into.
inline int64_t column_parts(int64_t rows, int64_t macs_per_row, int64_t max_parts) {
  const int64_t work = std::max(rows, kMinCountedRows) * macs_per_row;
  return std::max<int64_t>(1, std::min(max_parts, work / kMinMacsPerPart));
}

}  // namespace dpn::runtime
