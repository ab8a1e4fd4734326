#include "proxy/config/reader.h"

#include <algorithm>
#include <limits>

#include "proxy/config/units.h"

namespace ward::config {

namespace {

// Optimal string alignment distance: insertions, deletions, substitutions
// and swaps of neighbours ("jsno" -> "json" is one typo) each cost one. The
// words are config keys, a few dozen bytes at most.
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) {
    d[i][0] = i;
  }
  for (size_t j = 0; j <= b.size(); ++j) {
    d[0][j] = j;
  }
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

std::string join(const std::vector<std::string>& words) {
  std::string out;
  for (size_t i = 0; i < words.size(); ++i) {
    if (i > 0) {
      out += i + 1 == words.size() ? " or " : ", ";
    }
    out += words[i];
  }
  return out;
}

// Keeps messages readable when a value is long or binary junk.
std::string shorten(std::string_view text) {
  constexpr size_t kMax = 60;
  std::string out;
  for (char c : text.substr(0, kMax)) {
    out.push_back(static_cast<unsigned char>(c) < 0x20 ? '?' : c);
  }
  if (text.size() > kMax) {
    out += "...";
  }
  return out;
}

std::string prefix(const std::string& path) {
  return path.empty() ? "" : path + ": ";
}

}  // namespace

std::optional<std::string> closest_match(std::string_view word,
                                         const std::vector<std::string>& candidates) {
  std::optional<std::string> best;
  size_t best_distance = std::numeric_limits<size_t>::max();
  for (const auto& candidate : candidates) {
    size_t d = edit_distance(word, candidate);
    // Up to two edits, and fewer than half the word, so "id" does not
    // suggest "ip" for every short key.
    if (d <= 2 && d * 2 < candidate.size() && d < best_distance) {
      best = candidate;
      best_distance = d;
    }
  }
  return best;
}

std::string Section::child(std::string_view key) const {
  return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
}

const MapEntry* Section::find(std::string_view key) const {
  for (const auto& e : entries_) {
    if (e.key == key) {
      return &e;
    }
  }
  return nullptr;
}

const YAML::Node* Section::get(std::string_view key) const {
  const MapEntry* e = find(key);
  if (e == nullptr || e->value.IsNull()) {
    return nullptr;
  }
  return &e->value;
}

YAML::Node Section::node(std::string_view key) const {
  const MapEntry* e = find(key);
  return e != nullptr ? e->value : YAML::Node();
}

YAML::Mark Section::key_mark(std::string_view key) const {
  const MapEntry* e = find(key);
  return e != nullptr ? e->key_mark : mark_;
}

YAML::Mark Section::value_mark(std::string_view key) const {
  const MapEntry* e = find(key);
  if (e == nullptr) {
    return mark_;
  }
  if (e->value.IsNull()) {
    return e->key_mark;
  }
  return e->value.Mark();
}

void Reader::error(const YAML::Mark& mark, std::string message) {
  ConfigError e;
  e.file = file_;
  if (!mark.is_null()) {
    e.line = mark.line + 1;
    e.column = mark.column + 1;
  }
  if (silenced_.contains({e.line, e.column})) {
    return;
  }
  e.message = std::move(message);
  errors_.push_back(std::move(e));
}

void Reader::silence(const YAML::Mark& mark) {
  if (!mark.is_null()) {
    silenced_.insert({mark.line + 1, mark.column + 1});
  }
}

std::vector<ConfigError> Reader::take_errors() {
  // Stable: two problems at one position keep the order they were found in.
  std::stable_sort(errors_.begin(), errors_.end(), [](const auto& a, const auto& b) {
    return std::pair(a.line, a.column) < std::pair(b.line, b.column);
  });
  return std::move(errors_);
}

config::Mark Reader::mark_of(const YAML::Mark& mark) const {
  config::Mark m;
  m.file = file_;
  if (!mark.is_null()) {
    m.line = mark.line + 1;
    m.column = mark.column + 1;
  }
  return m;
}

std::vector<MapEntry> Reader::entries(const YAML::Node& map) {
  std::vector<MapEntry> out;
  for (const auto& kv : map) {
    if (!kv.first.IsScalar()) {
      continue;
    }
    MapEntry e{kv.first.Scalar(), kv.first.Mark(), kv.second};
    // yaml-cpp keeps both pairs of a repeated key and lookups see only the
    // first: refuse rather than guess which one the user meant.
    auto same = std::find_if(out.begin(), out.end(), [&](const auto& o) { return o.key == e.key; });
    if (same != out.end()) {
      error(e.key_mark, "duplicate key '" + shorten(e.key) + "' (first at line " +
                            std::to_string(same->key_mark.line + 1) + ")");
      continue;
    }
    out.push_back(std::move(e));
  }
  return out;
}

Section Reader::section(const YAML::Node& node, const YAML::Mark& fallback, std::string path,
                        std::initializer_list<std::string_view> known) {
  Section s;
  s.path_ = std::move(path);
  s.mark_ = fallback;
  if (node.IsNull()) {
    return s;
  }
  if (!node.IsMap()) {
    error(node.Mark(), prefix(s.path_) + "expected a map, got " + describe(node));
    return s;
  }
  s.mark_ = node.Mark();
  std::vector<std::string> known_keys(known.begin(), known.end());
  for (auto& e : entries(node)) {
    if (std::find(known.begin(), known.end(), e.key) == known.end()) {
      std::string message = "unknown key '" + shorten(e.key) + "'";
      if (!s.path_.empty()) {
        message += " in " + s.path_;
      }
      if (auto suggestion = closest_match(e.key, known_keys)) {
        message += " (did you mean '" + *suggestion + "'?)";
      }
      error(e.key_mark, std::move(message));
      continue;
    }
    s.entries_.push_back(std::move(e));
  }
  return s;
}

bool Reader::require(const Section& section, std::string_view key) {
  if (section.get(key) != nullptr) {
    return true;
  }
  // A key written with no value points at the key; a missing one at the map.
  YAML::Mark at = section.has(key) ? section.key_mark(key) : section.mark();
  std::string where = section.path().empty() ? "" : " in " + section.path();
  error(at, "missing required key '" + std::string(key) + "'" + where);
  return false;
}

std::string Reader::quote(std::string_view text) {
  return "'" + shorten(text) + "'";
}

std::string Reader::describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return quote(node.Scalar());
    default:
      return "nothing";
  }
}

std::optional<std::string> Reader::string_of(const YAML::Node& node, const YAML::Mark& mark,
                                             const std::string& path) {
  if (!node.IsScalar()) {
    error(mark, prefix(path) + "expected a string, got " + describe(node));
    return std::nullopt;
  }
  return node.Scalar();
}

std::optional<bool> Reader::bool_of(const YAML::Node& node, const YAML::Mark& mark,
                                    const std::string& path) {
  bool value = false;
  // yaml-cpp's decoding accepts the YAML 1.1 spellings (yes/no/on/off) too.
  if (!node.IsScalar() || !YAML::convert<bool>::decode(node, value)) {
    error(mark, prefix(path) + "expected true or false, got " + describe(node));
    return std::nullopt;
  }
  return value;
}

std::optional<uint64_t> Reader::number_of(const YAML::Node& node, const YAML::Mark& mark,
                                          const std::string& path, uint64_t min, uint64_t max) {
  std::optional<uint64_t> value;
  if (node.IsScalar()) {
    // parse_size without a unit is exactly "decimal digits, no overflow".
    const std::string& text = node.Scalar();
    if (!text.empty() && text.find_first_not_of("0123456789") == std::string::npos) {
      value = parse_size(text);
    }
  }
  if (!value || *value < min || *value > max) {
    error(mark, prefix(path) + "expected a whole number from " + std::to_string(min) + " to " +
                    std::to_string(max) + ", got " + describe(node));
    return std::nullopt;
  }
  return value;
}

std::optional<std::vector<YAML::Node>> Reader::list_of(const YAML::Node& node,
                                                       const YAML::Mark& mark,
                                                       const std::string& path) {
  std::vector<YAML::Node> items;
  if (node.IsNull()) {
    return items;
  }
  if (!node.IsSequence()) {
    error(mark, prefix(path) + "expected a list, got " + describe(node));
    return std::nullopt;
  }
  for (const auto& item : node) {
    items.push_back(item);
  }
  return items;
}

bool Reader::read(const Section& s, std::string_view key, std::string& out) {
  const YAML::Node* v = s.get(key);
  if (v == nullptr) {
    return true;
  }
  auto value = string_of(*v, s.value_mark(key), s.child(key));
  if (!value) {
    return false;
  }
  out = std::move(*value);
  return true;
}

bool Reader::read(const Section& s, std::string_view key, bool& out) {
  const YAML::Node* v = s.get(key);
  if (v == nullptr) {
    return true;
  }
  auto value = bool_of(*v, s.value_mark(key), s.child(key));
  if (!value) {
    return false;
  }
  out = *value;
  return true;
}

bool Reader::read(const Section& s, std::string_view key, uint32_t& out, uint32_t min,
                  uint32_t max) {
  const YAML::Node* v = s.get(key);
  if (v == nullptr) {
    return true;
  }
  auto value = number_of(*v, s.value_mark(key), s.child(key), min, max);
  if (!value) {
    return false;
  }
  out = static_cast<uint32_t>(*value);
  return true;
}

bool Reader::read_duration(const Section& s, std::string_view key, Duration& out, Duration min) {
  const YAML::Node* v = s.get(key);
  if (v == nullptr) {
    return true;
  }
  std::optional<Duration> value;
  if (v->IsScalar()) {
    value = parse_duration(v->Scalar());
  }
  if (!value) {
    error(s.value_mark(key),
          s.child(key) + ": expected a duration such as 250ms, 10s, 5m or 1h, got " + describe(*v));
    return false;
  }
  if (*value < min) {
    error(s.value_mark(key), s.child(key) + ": must be greater than 0");
    return false;
  }
  out = *value;
  return true;
}

bool Reader::read_size(const Section& s, std::string_view key, uint64_t& out, uint64_t min) {
  const YAML::Node* v = s.get(key);
  if (v == nullptr) {
    return true;
  }
  std::optional<uint64_t> value;
  if (v->IsScalar()) {
    value = parse_size(v->Scalar());
  }
  if (!value) {
    error(
        s.value_mark(key),
        s.child(key) + ": expected a size such as 512, 16KiB, 10MiB or 1GiB, got " + describe(*v));
    return false;
  }
  if (*value < min) {
    error(s.value_mark(key), s.child(key) + ": must be at least " + std::to_string(min));
    return false;
  }
  out = *value;
  return true;
}

bool Reader::read_choice(const Section& s, std::string_view key, std::string& out,
                         const std::vector<std::string>& choices) {
  std::string value;
  if (s.get(key) == nullptr) {
    return true;
  }
  if (!read(s, key, value)) {
    return false;
  }
  if (std::find(choices.begin(), choices.end(), value) == choices.end()) {
    std::string message =
        s.child(key) + ": unknown value '" + shorten(value) + "' (expected " + join(choices);
    if (auto suggestion = closest_match(value, choices)) {
      message += "; did you mean '" + *suggestion + "'?";
    }
    error(s.value_mark(key), message + ")");
    return false;
  }
  out = std::move(value);
  return true;
}

}  // namespace ward::config
