#pragma once

// Reading YAML against a schema while collecting every problem, each with its
// position. Used by the loader; nothing here knows the ward schema itself.

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proxy/config/config.h"
#include "proxy/config/loader.h"

namespace ward::config {

// The candidate closest to `word` by edit distance, if close enough to be a
// plausible typo ("adress" -> "address"); nullopt otherwise.
std::optional<std::string> closest_match(std::string_view word,
                                         const std::vector<std::string>& candidates);

// One key of a YAML map with its value, as read by Reader::entries.
struct MapEntry {
  std::string key;
  YAML::Mark key_mark;
  YAML::Node value;
};

// A YAML map read against the keys it may contain. Lookups treat a YAML null
// value (`key:` or `key: ~`) as "not set" unless asked with has().
class Section {
 public:
  const std::string& path() const { return path_; }
  const YAML::Mark& mark() const { return mark_; }
  // "path.key", or "key" at the top level.
  std::string child(std::string_view key) const;

  bool has(std::string_view key) const { return find(key) != nullptr; }
  // The value, or nullptr when the key is absent or null.
  const YAML::Node* get(std::string_view key) const;
  // The value, or a null node when the key is absent.
  YAML::Node node(std::string_view key) const;
  // The key's position; the section's own position when the key is absent.
  YAML::Mark key_mark(std::string_view key) const;
  // Where a value error is reported: the value, or its key if the value is null
  // (yaml-cpp gives an empty value the position of whatever follows it).
  YAML::Mark value_mark(std::string_view key) const;

 private:
  friend class Reader;
  const MapEntry* find(std::string_view key) const;

  std::string path_;
  YAML::Mark mark_;
  std::vector<MapEntry> entries_;
};

class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  void error(const YAML::Mark& mark, std::string message);
  // Errors at this exact position are dropped from now on: the value there is
  // already known to be broken (e.g. an unset ${VAR}) and one error is enough.
  void silence(const YAML::Mark& mark);
  bool has_errors() const { return !errors_.empty(); }
  // Every error, sorted into file order.
  std::vector<ConfigError> take_errors();
  config::Mark mark_of(const YAML::Mark& mark) const;

  // The pairs of a map in file order, reporting duplicate keys. Non-scalar
  // keys are skipped (the loader's first pass reports them).
  std::vector<MapEntry> entries(const YAML::Node& map);
  // A map checked against `known`: unknown keys are reported (with a
  // suggestion), and so is a value that is not a map. A null node gives an
  // empty section at `fallback`.
  Section section(const YAML::Node& node, const YAML::Mark& fallback, std::string path,
                  std::initializer_list<std::string_view> known);
  // Reports "missing required key" at the section when `key` is absent/null.
  bool require(const Section& section, std::string_view key);

  // Typed reads of a single node. Each reports a wrong type or bad value at
  // `mark` prefixed with `path`, and returns nullopt.
  std::optional<std::string> string_of(const YAML::Node& node, const YAML::Mark& mark,
                                       const std::string& path);
  std::optional<bool> bool_of(const YAML::Node& node, const YAML::Mark& mark,
                              const std::string& path);
  std::optional<uint64_t> number_of(const YAML::Node& node, const YAML::Mark& mark,
                                    const std::string& path, uint64_t min, uint64_t max);
  // A sequence's items; a null node is an empty list.
  std::optional<std::vector<YAML::Node>> list_of(const YAML::Node& node, const YAML::Mark& mark,
                                                 const std::string& path);

  // The same reads of a section's key. They leave `out` untouched (the
  // default) when the key is absent or null, and return false on an error.
  bool read(const Section& s, std::string_view key, std::string& out);
  bool read(const Section& s, std::string_view key, bool& out);
  bool read(const Section& s, std::string_view key, uint32_t& out, uint32_t min, uint32_t max);
  // `min` is the smallest duration allowed (0ms or 1ms in practice).
  bool read_duration(const Section& s, std::string_view key, Duration& out, Duration min);
  bool read_size(const Section& s, std::string_view key, uint64_t& out, uint64_t min);
  // One of `choices`; reports the list and a suggestion otherwise.
  bool read_choice(const Section& s, std::string_view key, std::string& out,
                   const std::vector<std::string>& choices);

  // "a map", "a list", "nothing" or the scalar quoted, for messages.
  static std::string describe(const YAML::Node& node);
  // 'text', shortened and without control characters, for messages.
  static std::string quote(std::string_view text);

 private:
  std::string file_;
  std::vector<ConfigError> errors_;
  std::set<std::pair<int, int>> silenced_;
};

}  // namespace ward::config
