#include "filters/registry.h"

#include <stdexcept>

namespace ward::filters {

void FilterRegistry::add(std::string name, FilterFactory factory) {
  factories_[std::move(name)] = std::move(factory);
}

std::vector<std::string> FilterRegistry::names() const {
  std::vector<std::string> out;
  for (const auto& [name, factory] : factories_) {
    out.push_back(name);
  }
  return out;
}

const FilterFactory* FilterRegistry::find(const std::string& name) const {
  auto it = factories_.find(name);
  return it == factories_.end() ? nullptr : &it->second;
}

FilterChain FilterRegistry::build(const std::vector<config::FilterSpec>& specs,
                                  const std::string& chain, config::Reader& reader,
                                  observe::Registry& metrics, RuntimeState& runtime) const {
  FilterChain out;
  std::map<std::string, int> seen;
  for (const auto& spec : specs) {
    const FilterFactory* factory = find(spec.name);
    if (factory == nullptr) {
      continue;  // the loader already reported the unknown name
    }
    int n = ++seen[spec.name];
    std::string label = chain + "." + spec.name;
    if (n > 1) {
      label += "." + std::to_string(n);
    }
    BuildContext ctx{spec, reader, metrics, runtime, chain, std::move(label)};
    if (auto filter = (*factory)(ctx)) {
      out.add(std::move(filter));
    }
  }
  return out;
}

}  // namespace ward::filters
