#include "proxy/config/env_subst.h"

namespace ward::config {

namespace {

bool is_name_start(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}
bool is_name_char(char c) {
  return is_name_start(c) || (c >= '0' && c <= '9');
}

}  // namespace

std::optional<std::string> expand_env(std::string_view text, const EnvLookup& env,
                                      std::string& error) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    if (text.compare(i, 3, "$${") == 0) {
      out += "${";
      i += 3;
      continue;
    }
    if (text.compare(i, 2, "${") != 0) {
      out.push_back(text[i]);
      ++i;
      continue;
    }
    size_t close = text.find('}', i + 2);
    if (close == std::string_view::npos) {
      error = "'${' without a closing '}'";
      return std::nullopt;
    }
    std::string_view body = text.substr(i + 2, close - i - 2);
    std::string_view name = body;
    std::optional<std::string_view> fallback;
    if (size_t sep = body.find(":-"); sep != std::string_view::npos) {
      name = body.substr(0, sep);
      fallback = body.substr(sep + 2);
    }
    bool valid = !name.empty() && is_name_start(name.front());
    for (char c : name) {
      valid = valid && is_name_char(c);
    }
    if (!valid) {
      error = "bad environment variable reference '${" + std::string(body) +
              "}' (a name is letters, digits and '_')";
      return std::nullopt;
    }
    std::optional<std::string> value = env ? env(name) : std::nullopt;
    if (fallback && (!value || value->empty())) {
      value = std::string(*fallback);
    }
    if (!value) {
      error = "environment variable '" + std::string(name) + "' is not set (write ${" +
              std::string(name) + ":-default} to give a default)";
      return std::nullopt;
    }
    out += *value;
    i = close + 1;
  }
  return out;
}

}  // namespace ward::config
