// The request planner (docs/performance.md, "Ranking requests"): which nodes of a graph depend only
// on the fields a request passes once per user. Those run on the users' rows; the values they hand
// to candidate-dependent nodes (the boundary) are gathered by group, one row per candidate.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "graph/graph.h"

namespace dpn::graph {

// A candidate node run as its op's SplitOp (ops/op.h): what it computes from user-only inputs,
// once per user. By columns: its input 0 is a concat of user-only and candidate values.
struct Split {
  size_t node = 0;
  std::vector<int> user_parts, cand_parts;  // by columns: the concat's inputs of each kind, in order
  int64_t mu = 0, mi = 0;                   // their total widths
  std::vector<int> reads;                   // the values it reads on the candidate rows
  std::unique_ptr<ops::SplitOp> op;
};

struct SharedPlan {
  std::vector<char> user;       // per node: 1 when it reads only shared fields (directly or not)
  std::vector<char> candidate;  // per node: the complement (1 when a candidate field feeds it)
  std::vector<char> skip2;      // per node: 1 when step 2 (the candidate rows) does not run it
  std::vector<int> boundary;    // user-only values step 2 reads, or the graph's output
  // What the plan saves per candidate row beyond the first of each user, a proxy for its cost:
  // the user-only nodes' widths (floats) plus each split's user columns × outputs (multiply-adds).
  int64_t saved_per_row = 0;
  int64_t kept_per_user = 0;  // floats a request keeps per user: the boundary widths, the parts
  std::vector<Split> splits;
  std::vector<int> split_of;  // per node: its index in splits, or -1
};

// shared: one entry per schema field, 1 for the fields given once per user.
SharedPlan plan_shared(const Graph& g, const std::vector<char>& shared);

// The plans of one model by shared-field set, made once per distinct set. Lookups take no lock
// (a snapshot read through std::atomic_load, as ModelHolder does); a new set is added under a
// mutex, copy-on-write. At most kMaxPlans sets are kept; get() returns null for later ones
// (their requests take the broadcast path: planning per call would repack weights each time).
class PlanCache {
 public:
  static constexpr size_t kMaxPlans = 64;
  std::shared_ptr<const SharedPlan> get(const Graph& g, const std::vector<char>& shared) const;

 private:
  using Entry = std::pair<std::string, std::shared_ptr<const SharedPlan>>;
  mutable std::shared_ptr<const std::vector<Entry>> plans_;  // atomic_load / atomic_store only
  mutable std::mutex add_;
};

}  // namespace dpn::graph
