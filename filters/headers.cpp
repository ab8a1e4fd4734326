#include "filters/headers.h"

#include <array>
#include <cstdio>
#include <utility>
#include <vector>

namespace ward::filters {

namespace {

// RFC 9110 5.6.2 tchar, as a table: names are checked once per option.
constexpr std::array<bool, 256> make_tchar_table() {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) {
    t[c] = true;
  }
  for (int c = 'a'; c <= 'z'; ++c) {
    t[c] = true;
    t[c - 'a' + 'A'] = true;
  }
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) {
    t[static_cast<unsigned char>(c)] = true;
  }
  return t;
}
constexpr auto kTchar = make_tchar_table();

// Framing (RFC 9112 6.1-6.3), the connection and what it lists (RFC 9110
// 7.6.1), and the hop-by-hop fields of RFC 9110 7.8 / 10.1.4 and the
// deprecated Proxy-Connection.
constexpr std::array<std::string_view, 8> kConnectionFields{
    "Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive", "Upgrade", "TE",
    "Trailer",        "Proxy-Connection",
};

using NamedValue = std::pair<std::string, std::string>;

struct NameAt {
  std::string name;
  YAML::Mark mark;
};

// One direction's edits. Removals run first, so `set` always leaves exactly
// one field; the two lists never share a name (refused at build time).
struct HeaderEdits {
  std::vector<std::string> remove;
  std::vector<NamedValue> set;

  void apply(http::HeaderList& fields) const {
    for (const auto& name : remove) {
      fields.remove(name);
    }
    for (const auto& [name, value] : set) {
      fields.set(name, value);
    }
  }
};

// `<key>: {Name: value, ...}`. Appends to `out` and `names`; false on error.
bool read_set(config::Reader& reader, const config::Section& s, std::string_view key,
              std::vector<NamedValue>& out, std::vector<NameAt>& names) {
  const YAML::Node* node = s.get(key);
  if (node == nullptr) {
    return true;
  }
  const std::string path = s.child(key);
  if (!node->IsMap()) {
    reader.error(s.value_mark(key), path + ": expected a map of header name to value, got " +
                                        config::Reader::describe(*node));
    return false;
  }
  bool ok = true;
  for (const auto& e : reader.entries(*node)) {
    if (!check_header_name(reader, e.key, e.key_mark, path)) {
      ok = false;
      continue;
    }
    const std::string value_path = path + "." + e.key;
    // A name repeated in another case is the same field: which value would win?
    bool duplicate = false;
    for (const auto& seen : names) {
      if (http::iequals(seen.name, e.key)) {
        reader.error(e.key_mark, path + ": duplicate header " + config::Reader::quote(e.key) +
                                     " (first at line " + std::to_string(seen.mark.line + 1) + ")");
        duplicate = true;
        break;
      }
    }
    if (duplicate) {
      ok = false;
      continue;
    }
    if (e.value.IsNull()) {
      reader.error(e.key_mark, value_path + ": expected a value (remove a header with " +
                                   std::string(key.substr(0, key.find('_'))) + "_remove)");
      ok = false;
      continue;
    }
    auto value = read_header_value(reader, e.value, e.value.Mark(), value_path);
    if (!value) {
      ok = false;
      continue;
    }
    names.push_back({e.key, e.key_mark});
    out.emplace_back(e.key, std::move(*value));
  }
  return ok;
}

// `<key>: [Name, ...]`. Appends to `names`; false on error.
bool read_remove(config::Reader& reader, const config::Section& s, std::string_view key,
                 std::vector<NameAt>& names) {
  const YAML::Node* node = s.get(key);
  if (node == nullptr) {
    return true;
  }
  const std::string path = s.child(key);
  auto items = reader.list_of(*node, s.value_mark(key), path);
  if (!items) {
    return false;
  }
  bool ok = true;
  for (size_t i = 0; i < items->size(); ++i) {
    const YAML::Node& item = (*items)[i];
    auto name = read_header_name(reader, item, item.Mark(), path + "[" + std::to_string(i) + "]");
    if (!name) {
      ok = false;
      continue;
    }
    names.push_back({std::move(*name), item.Mark()});
  }
  return ok;
}

// One direction ("request" or "response"): both keys, and a name that is
// both set and removed is refused (the intent is unclear).
std::optional<HeaderEdits> read_edits(config::Reader& reader, const config::Section& s,
                                      const std::string& direction) {
  HeaderEdits edits;
  std::vector<NameAt> set_names;
  std::vector<NameAt> remove_names;
  const std::string set_key = direction + "_set";
  const std::string remove_key = direction + "_remove";
  bool ok = read_set(reader, s, set_key, edits.set, set_names);
  ok = read_remove(reader, s, remove_key, remove_names) && ok;
  for (size_t i = 0; i < remove_names.size(); ++i) {
    const auto& removed = remove_names[i];
    for (const auto& set : set_names) {
      if (http::iequals(removed.name, set.name)) {
        reader.error(removed.mark, s.child(remove_key) + "[" + std::to_string(i) +
                                       "]: " + config::Reader::quote(removed.name) +
                                       " is also in " + s.child(set_key) + " (line " +
                                       std::to_string(set.mark.line + 1) + ")");
        ok = false;
      }
    }
    edits.remove.push_back(removed.name);
  }
  if (!ok) {
    return std::nullopt;
  }
  return edits;
}

class HeadersFilter : public Filter {
 public:
  HeadersFilter(HeaderEdits request, HeaderEdits response)
      : request_(std::move(request)), response_(std::move(response)) {}

  FilterStatus on_request(RequestContext& ctx) override {
    request_.apply(*ctx.request_headers);
    return FilterStatus::next;
  }

  // Runs for ward's own replies too, so a 429 or 404 gets the same fields.
  void on_response(RequestContext& ctx) override { response_.apply(*ctx.response_headers); }

 private:
  const HeaderEdits request_;
  const HeaderEdits response_;
};

}  // namespace

bool is_header_name(std::string_view name) {
  if (name.empty()) {
    return false;
  }
  for (char c : name) {
    if (!kTchar[static_cast<unsigned char>(c)]) {
      return false;
    }
  }
  return true;
}

bool is_connection_field(std::string_view name) {
  for (auto field : kConnectionFields) {
    if (http::iequals(name, field)) {
      return true;
    }
  }
  return false;
}

std::optional<std::string> header_value_problem(std::string_view value) {
  for (char ch : value) {
    auto c = static_cast<unsigned char>(ch);
    // CR and LF would end the field early: the rest becomes a header (or a
    // body) of the attacker's choosing. NUL is refused by most parsers.
    if (c == '\r') {
      return "contains a carriage return (CR)";
    }
    if (c == '\n') {
      return "contains a line feed (LF)";
    }
    if (c == '\0') {
      return "contains a NUL byte";
    }
    if ((c < 0x20 && c != '\t') || c == 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02x", c);
      return std::string("contains the control character ") + hex;
    }
  }
  if (!value.empty() && (http::is_ows(value.front()) || http::is_ows(value.back()))) {
    return "has leading or trailing whitespace (a recipient strips it)";
  }
  return std::nullopt;
}

bool check_header_name(config::Reader& reader, std::string_view name, const YAML::Mark& mark,
                       const std::string& path) {
  if (!is_header_name(name)) {
    reader.error(mark, path + ": " + config::Reader::quote(name) +
                           " is not a valid header name (letters, digits and "
                           "!#$%&'*+-.^_`|~ only)");
    return false;
  }
  if (is_connection_field(name)) {
    reader.error(mark, path + ": " + config::Reader::quote(name) +
                           " is a framing or hop-by-hop header that ward manages itself");
    return false;
  }
  return true;
}

std::optional<std::string> read_header_name(config::Reader& reader, const YAML::Node& node,
                                            const YAML::Mark& mark, const std::string& path) {
  auto name = reader.string_of(node, mark, path);
  if (!name || !check_header_name(reader, *name, mark, path)) {
    return std::nullopt;
  }
  return name;
}

std::optional<std::string> read_header_value(config::Reader& reader, const YAML::Node& node,
                                             const YAML::Mark& mark, const std::string& path) {
  auto value = reader.string_of(node, mark, path);
  if (!value) {
    return std::nullopt;
  }
  if (auto problem = header_value_problem(*value)) {
    reader.error(mark, path + ": the value " + *problem);
    return std::nullopt;
  }
  return value;
}

config::Section checked_options(BuildContext& ctx, std::initializer_list<std::string_view> known,
                                bool& ok) {
  config::Section s = ctx.options(known);
  const YAML::Node& options = ctx.spec.options;
  if (options.IsNull()) {
    ok = true;
    return s;
  }
  size_t kept = 0;
  for (auto key : known) {
    kept += s.has(key) ? 1 : 0;
  }
  ok = options.IsMap() && kept == options.size();
  return s;
}

YAML::Mark options_mark(const BuildContext& ctx) {
  YAML::Mark mark = ctx.spec.options.Mark();
  const config::Mark& name = ctx.spec.mark;  // 1-based; line 0 when unknown
  // A map the loader made has no position of its own (null, or yaml-cpp's
  // default 0:0); a written one always comes after the filter's name.
  const bool written =
      !mark.is_null() &&
      (mark.line + 1 > name.line || (mark.line + 1 == name.line && mark.column + 1 > name.column));
  if (!written && name.line > 0) {
    mark.pos = 0;
    mark.line = name.line - 1;
    mark.column = name.column - 1;
  }
  return mark;
}

std::unique_ptr<Filter> make_headers_filter(BuildContext& ctx) {
  bool ok = true;
  config::Section s = checked_options(
      ctx, {"request_set", "request_remove", "response_set", "response_remove"}, ok);
  auto request = read_edits(ctx.reader, s, "request");
  auto response = read_edits(ctx.reader, s, "response");
  if (!ok || !request || !response) {
    return nullptr;
  }
  return std::make_unique<HeadersFilter>(std::move(*request), std::move(*response));
}

}  // namespace ward::filters
