#include "graph/graph.h"

#include <unordered_map>

#include "ops/session.h"
#include "runtime/load_budget.h"

namespace dpn::graph {

using format::Json;

namespace {
[[noreturn]] void bad(const std::string& msg) { throw FormatError("invalid model graph: " + msg); }
}  // namespace

void check_opset(const Json& meta) {
  const Json* v = meta.find("opset");
  if (!v) throw FormatError("invalid model metadata: missing 'opset'");
  if (!v->is_integer() || v->as_int() < 1)
    throw FormatError("invalid model metadata: 'opset' must be an integer >= 1");
  const int64_t opset = v->as_int();
  if (opset <= schema::kOpset) return;
  std::string what;
  // Name the first unknown field kind or operator, when the structure lets us find one.
  if (const Json* s = meta.find("schema"))
    if (const Json* fs = s->find("fields"); fs && fs->is_array())
      for (const Json& f : fs->items())
        if (const Json* k = f.find("kind"); k && k->is_string() && what.empty())
          if (k->as_string() != "sparse" && k->as_string() != "multi_hot" && k->as_string() != "dense" &&
              k->as_string() != "sequence")
            what = "field kind '" + k->as_string() + "'";
  if (what.empty())
    if (const Json* g = meta.find("graph"))
      if (const Json* ns = g->find("nodes"); ns && ns->is_array())
        for (const Json& n : ns->items())
          if (const Json* op = n.find("op"); op && op->is_string() && what.empty())
            if (!ops::find_factory(op->as_string())) what = "operator '" + op->as_string() + "'";
  throw FormatError("model.bin uses opset " + std::to_string(opset) +
                    ", newer than this dpn_infer supports (" + std::to_string(schema::kOpset) + ")" +
                    (what.empty() ? std::string() : "; unknown " + what) + "; " +
                    schema::upgrade_advice());
}

Graph build_graph(const Json& meta, const std::vector<schema::Field>& fields,
                  const format::Container& tensors) {
  const Json* g = meta.find("graph");
  if (!g || !g->is_object()) bad("metadata has no 'graph' object");
  const Json* nodes = g->find("nodes");
  if (!nodes || !nodes->is_array()) bad("'graph.nodes' must be an array");
  if (nodes->items().empty()) bad("'graph.nodes' is empty");
  const Json* ov = meta.find("opset");  // validated by check_opset
  const int64_t opset = ov && ov->is_integer() ? ov->as_int() : 0;
  Graph out;
  std::unordered_map<std::string, int> values;
  size_t idx = 0;
  for (const Json& n : nodes->items()) {
    std::string label = "node " + std::to_string(idx++);
    if (!n.is_object()) bad(label + " is not an object");
    const Json* op = n.find("op");
    if (!op || !op->is_string()) bad(label + ": missing 'op' (a string)");
    label += " (" + op->as_string();
    if (const Json* name = n.find("name"); name && name->is_string())
      label += " '" + name->as_string() + "'";
    label += ")";
    ops::Factory make = ops::find_factory(op->as_string());
    if (!make)
      throw FormatError("model.bin uses operator '" + op->as_string() + "' (" + label +
                        "), unknown to this dpn_infer (opset " + std::to_string(schema::kOpset) + "); " +
                        schema::upgrade_advice());
    Node node;
    std::vector<int64_t> in_widths;
    if (const Json* ins = n.find("inputs")) {
      if (!ins->is_array()) bad(label + ": 'inputs' must be an array");
      for (const Json& i : ins->items()) {
        if (!i.is_string()) bad(label + ": every input must be a value name (a string)");
        auto it = values.find(i.as_string());
        if (it == values.end())
          bad(label + ": input '" + i.as_string() + "' is not defined by an earlier node");
        node.inputs.push_back(it->second);
        in_widths.push_back(out.widths[size_t(it->second)]);
      }
    }
    const Json* o = n.find("output");
    if (!o || !o->is_string() || o->as_string().empty())
      bad(label + ": missing 'output' (a value name)");
    if (values.count(o->as_string()))
      bad(label + ": value '" + o->as_string() + "' is already defined by an earlier node");
    runtime::LoadScope::set_node(label);  // named when its packed weights pass the load's bounds
    ops::NodeBuilder nb(n, label, std::move(in_widths), fields, tensors, opset);
    node.op = make(nb);
    node.kind = op->as_string();
    if (node.op->width < 1) bad(label + ": output width is 0");
    out.row_floats += node.op->width;
    if (out.row_floats > kMaxRowFloats)
      bad(label + ": the graph's values need " + std::to_string(out.row_floats) +
          " floats per row, more than " + std::to_string(kMaxRowFloats));
    node.output = static_cast<int>(out.widths.size());
    values.emplace(o->as_string(), node.output);
    out.widths.push_back(node.op->width);
    out.nodes.push_back(std::move(node));
  }
  const Json* o = g->find("output");
  if (!o || !o->is_string()) bad("missing 'graph.output' (a value name)");
  auto it = values.find(o->as_string());
  if (it == values.end()) bad("graph.output '" + o->as_string() + "' is not defined by any node");
  out.output = it->second;
  if (out.widths[size_t(out.output)] != 1)
    bad("graph.output '" + o->as_string() + "' has width " +
        std::to_string(out.widths[size_t(out.output)]) + "; the logit must have width 1");
  return out;
}

void mark_session_fields(const Graph& g, std::vector<schema::Field>& fields) {
  for (const Node& n : g.nodes) {
    const auto* s = dynamic_cast<const ops::SessionOp*>(n.op.get());
    if (!s || n.op->field < 0) continue;
    schema::Field& f = fields[size_t(n.op->field)];
    if (f.sessions >= 0 && f.sessions != int(s->timestamps))
      bad("field '" + f.info.name + "' is laid out by two timestamps fields");
    f.sessions = int(s->timestamps);
  }
}

}  // namespace dpn::graph
