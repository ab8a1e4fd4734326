#include "proxy/http/header_list.h"

#include <cstring>

#include <algorithm>
#include <array>

#include "proxy/util/spare.h"

namespace ward::http {

namespace {

// ASCII lower-casing table: header names and tokens are case-insensitive
// ASCII (RFC 9110 5.1); bytes >= 0x80 compare as themselves.
constexpr std::array<unsigned char, 256> make_lower_table() {
  std::array<unsigned char, 256> t{};
  for (int i = 0; i < 256; ++i) {
    t[i] = static_cast<unsigned char>((i >= 'A' && i <= 'Z') ? i + ('a' - 'A') : i);
  }
  return t;
}
constexpr auto kLower = make_lower_table();

// First arena allocation: a typical request head fits, so a connection
// grows its arena once or not at all.
constexpr size_t kMinArena = 1024;

}  // namespace

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (kLower[static_cast<unsigned char>(a[i])] != kLower[static_cast<unsigned char>(b[i])]) {
      return false;
    }
  }
  return true;
}

bool has_token(std::string_view value, std::string_view token) {
  // RFC 9110 5.6.1: #element lists, elements separated by "," with OWS
  // around them; empty elements are ignored.
  while (!value.empty()) {
    size_t comma = value.find(',');
    std::string_view element = trim_ows(value.substr(0, comma));
    if (iequals(element, token)) {
      return true;
    }
    if (comma == std::string_view::npos) {
      break;
    }
    value.remove_prefix(comma + 1);
  }
  return false;
}

void HeaderList::release_memory() {
  clear();
  util::give_back(arena_);
  util::give_back(entries_);
}

void HeaderList::take_spares() {
  util::take_spare(arena_);
  util::take_spare(entries_);
}

void HeaderList::clear() {
  // std::string::clear and std::vector::clear keep their capacity: the next
  // request on this connection reuses the same memory.
  arena_.clear();
  entries_.clear();
  removed_ = 0;
}

uint32_t HeaderList::append_arena(std::string_view text) {
  // A view into the arena itself (add(name, *get(other))) must survive a
  // reallocation: translate it to an offset before growing.
  const char* base = arena_.data();
  bool aliased = !text.empty() && text.data() >= base && text.data() < base + arena_.size();
  size_t alias_off = aliased ? static_cast<size_t>(text.data() - base) : 0;
  arena_.reserve(arena_.size() + text.size());
  if (aliased) {
    text = std::string_view(arena_.data() + alias_off, text.size());
  }
  auto off = static_cast<uint32_t>(arena_.size());
  arena_.append(text.data(), text.size());
  return off;
}

void HeaderList::add(std::string_view name, std::string_view value) {
  const size_t used = arena_.size();
  if (used == 0) {
    take_spares();  // the first field: nothing in the arena can alias
  }
  const size_t need = used + name.size() + value.size();
  if (need > arena_.capacity()) {
    // Slow path, only while warming up: grow once for both parts,
    // translating views that point into the arena so that growing cannot
    // leave them dangling.
    const char* base = arena_.data();
    auto offset_of = [&](std::string_view s) -> std::ptrdiff_t {
      if (!s.empty() && s.data() >= base && s.data() < base + used) {
        return s.data() - base;
      }
      return -1;
    };
    std::ptrdiff_t name_alias = offset_of(name);
    std::ptrdiff_t value_alias = offset_of(value);
    arena_.reserve(std::max(need, kMinArena));
    if (name_alias >= 0) {
      name = std::string_view(arena_.data() + name_alias, name.size());
    }
    if (value_alias >= 0) {
      value = std::string_view(arena_.data() + value_alias, value.size());
    }
  }
  // With the capacity in place nothing below reallocates, so views into the
  // arena stay valid while they are copied.
  Entry e;
  e.name_off = static_cast<uint32_t>(used);
  e.name_len = static_cast<uint32_t>(name.size());
  e.value_off = static_cast<uint32_t>(used + name.size());
  e.value_len = static_cast<uint32_t>(value.size());
  e.removed = false;
  arena_.append(name.data(), name.size());
  arena_.append(value.data(), value.size());
  entries_.push_back(e);
}

std::string_view HeaderList::adopt(std::string_view bytes) {
  const size_t used = arena_.size();
  if (used == 0) {
    take_spares();  // a short head fits the string's inline buffer: entries need one too
  }
  if (used + bytes.size() > arena_.capacity()) {
    arena_.reserve(std::max(used + bytes.size(), kMinArena));
  }
  arena_.append(bytes.data(), bytes.size());
  return std::string_view(arena_.data() + used, bytes.size());
}

void HeaderList::add_adopted(std::string_view name, std::string_view value) {
  Entry e;
  e.name_off = static_cast<uint32_t>(name.data() - arena_.data());
  e.name_len = static_cast<uint32_t>(name.size());
  e.value_off = static_cast<uint32_t>(value.data() - arena_.data());
  e.value_len = static_cast<uint32_t>(value.size());
  e.removed = false;
  entries_.push_back(e);
}

void HeaderList::set(std::string_view name, std::string_view value) {
  // Removing only flags entries; the bytes stay in the arena, so `value` may
  // be a view of a field being replaced.
  remove(name);
  add(name, value);
}

void HeaderList::append_to_list(std::string_view name, std::string_view element) {
  // Lay out the joined value at the end of the arena from offsets (the arena
  // may move while it grows), then point one new entry at it.
  size_t joined = element.size();
  size_t parts = 0;
  for (const auto& e : entries_) {
    if (!e.removed && iequals(view(e.name_off, e.name_len), name)) {
      joined += e.value_len + 2;
      ++parts;
    }
  }
  if (parts == 0) {
    add(name, element);
    return;
  }
  const char* base = arena_.data();
  bool element_aliased =
      !element.empty() && element.data() >= base && element.data() < base + arena_.size();
  size_t element_off = element_aliased ? static_cast<size_t>(element.data() - base) : 0;
  arena_.reserve(arena_.size() + name.size() + joined);
  if (element_aliased) {
    element = std::string_view(arena_.data() + element_off, element.size());
  }
  Entry out{};
  out.name_len = static_cast<uint32_t>(name.size());
  out.name_off = append_arena(name);
  out.value_off = static_cast<uint32_t>(arena_.size());
  for (auto& e : entries_) {
    if (!e.removed && iequals(view(e.name_off, e.name_len), name)) {
      arena_.append(arena_.data() + e.value_off, e.value_len);
      arena_.append(", ", 2);
      e.removed = true;
      ++removed_;
    }
  }
  arena_.append(element.data(), element.size());
  out.value_len = static_cast<uint32_t>(arena_.size() - out.value_off);
  out.removed = false;
  entries_.push_back(out);
}

size_t HeaderList::remove(std::string_view name) {
  size_t n = 0;
  for (auto& e : entries_) {
    if (!e.removed && iequals(view(e.name_off, e.name_len), name)) {
      e.removed = true;
      ++n;
    }
  }
  removed_ += n;
  return n;
}

std::optional<std::string_view> HeaderList::get(std::string_view name) const {
  for (const auto& e : entries_) {
    if (!e.removed && iequals(view(e.name_off, e.name_len), name)) {
      return view(e.value_off, e.value_len);
    }
  }
  return std::nullopt;
}

size_t HeaderList::count(std::string_view name) const {
  size_t n = 0;
  for (const auto& e : entries_) {
    if (!e.removed && iequals(view(e.name_off, e.name_len), name)) {
      ++n;
    }
  }
  return n;
}

size_t HeaderList::size() const {
  return entries_.size() - removed_;
}

size_t HeaderList::byte_size() const {
  size_t n = 0;
  for (const auto& e : entries_) {
    if (!e.removed) {
      n += e.name_len + e.value_len;
    }
  }
  return n;
}

void HeaderList::serialize_to(std::string& out) const {
  // Sized once, then filled with memcpy: four append() calls per field, each
  // with its own capacity check, were 8% of a proxied request's
  // instructions (callgrind, h1-small).
  size_t need = 0;
  for (const auto& e : entries_) {
    if (!e.removed) {
      need += e.name_len + e.value_len + 4;  // ": " and CRLF
    }
  }
  size_t at = out.size();
  out.resize(at + need);
  char* p = out.data() + at;
  const char* base = arena_.data();
  for (const auto& e : entries_) {
    if (!e.removed) {
      std::memcpy(p, base + e.name_off, e.name_len);
      p += e.name_len;
      p[0] = ':';
      p[1] = ' ';
      p += 2;
      std::memcpy(p, base + e.value_off, e.value_len);
      p += e.value_len;
      p[0] = '\r';
      p[1] = '\n';
      p += 2;
    }
  }
}

}  // namespace ward::http
