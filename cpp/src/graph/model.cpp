// dpn::Model: load (map, validate container, parse metadata, build graph) and predict.
#include <stdexcept>

#include "dpn/dpn.h"
#include "format/json.h"
#include "format/mapped_file.h"
#include "format/reader.h"
#include "graph/executor.h"
#include "graph/graph.h"
#include "graph/schema.h"

namespace dpn {

struct Model::Impl {
  explicit Impl(const std::string& path) : file(path) {}
  format::MappedFile file;  // kept alive: embedding tables and small params are read in place
  format::Container container;
  std::vector<graph::Field> fields;
  std::vector<FieldInfo> infos;
  graph::Graph graph;
};

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;

std::shared_ptr<const Model> Model::load(const std::string& path) {
  auto impl = std::make_unique<Impl>(path);
  impl->container = format::read_container(impl->file.data(), impl->file.size());
  const std::string& text = impl->container.metadata;
  const format::Json meta = format::Json::parse(text.data(), text.size());
  if (!meta.is_object()) throw FormatError("invalid model metadata: the JSON must be an object");
  graph::check_opset(meta);
  impl->fields = graph::parse_schema(meta);
  for (const auto& f : impl->fields) impl->infos.push_back(f.info);
  impl->graph = graph::build_graph(meta, impl->fields, impl->container);
  return std::shared_ptr<const Model>(new Model(std::move(impl)));
}

int64_t Model::num_fields() const { return static_cast<int64_t>(impl_->fields.size()); }
const std::vector<FieldInfo>& Model::fields() const { return impl_->infos; }
const std::string& Model::metadata_json() const { return impl_->container.metadata; }

void Model::predict(const std::vector<FieldInput>& inputs, int64_t batch, float* out, bool logits,
                    int threads) const {
  if (threads < 1) throw std::invalid_argument("threads must be >= 1");
  graph::validate_inputs(impl_->fields, inputs, batch);
  if (batch > 0 && !out) throw std::invalid_argument("out is null");
  graph::execute(impl_->graph, inputs, batch, out, logits, threads);
}

}  // namespace dpn
