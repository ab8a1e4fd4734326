#pragma once

// `${NAME}` substitution in string values (CONFIG.md "Units everywhere").

#include <optional>
#include <string>
#include <string_view>

#include "proxy/config/loader.h"

namespace ward::config {

// Expands every reference in `text`:
//   ${NAME}          the variable's value; unset is an error, set-but-empty is ""
//   ${NAME:-default} the value, or `default` when NAME is unset or empty (as in
//                    the shell); the default is taken literally, up to the
//                    first '}'
//   $${              a literal "${" (so a value can contain one)
// A '$' not followed by '{' is kept as is. Returns nullopt and sets `error` on
// an unset variable, a bad name or a missing '}'. NAME is [A-Za-z_][A-Za-z0-9_]*.
std::optional<std::string> expand_env(std::string_view text, const EnvLookup& env,
                                      std::string& error);

}  // namespace ward::config
