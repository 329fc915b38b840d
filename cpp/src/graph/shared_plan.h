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

struct SharedPlan {
  std::vector<char> user;       // per node: 1 when it reads only shared fields (directly or not)
  std::vector<char> candidate;  // per node: the complement (1 when a candidate field feeds it)
  std::vector<int> boundary;    // user-only values read by a candidate node, or the graph's output
  int64_t user_floats = 0;      // Σ widths of the user-only nodes: the work a split saves per row
};

// shared: one entry per schema field, 1 for the fields given once per user.
SharedPlan plan_shared(const Graph& g, const std::vector<char>& shared);

// The plans of one model by shared-field set, made once per distinct set. Lookups take no lock
// (a snapshot read through std::atomic_load, as ModelHolder does); a new set is added under a
// mutex, copy-on-write. At most kMaxPlans sets are kept; later ones are planned per call.
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
