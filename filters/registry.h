#pragma once

// The filter catalogue: name -> factory, filled explicitly by
// register_builtin_filters (no static self-registration: ARCHITECTURE.md).

#include <map>
#include <string>
#include <vector>

#include "filters/chain.h"
#include "filters/filter.h"

namespace ward::filters {

class FilterRegistry {
 public:
  void add(std::string name, FilterFactory factory);
  std::vector<std::string> names() const;
  const FilterFactory* find(const std::string& name) const;

  // Builds a chain from a config list. `chain` is "global" or the route's
  // name (for metric labels). Errors go to `reader`; the chain then holds
  // the filters that did build.
  FilterChain build(const std::vector<config::FilterSpec>& specs, const std::string& chain,
                    config::Reader& reader, observe::Registry& metrics,
                    RuntimeState& runtime) const;

 private:
  std::map<std::string, FilterFactory> factories_;
};

// Every filter of CONFIG.md's table.
void register_builtin_filters(FilterRegistry& registry);

}  // namespace ward::filters
