#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ward::http {

// Optional whitespace (RFC 9110 5.6.3): SP or HTAB. Inline: the parser
// calls it per byte.
inline bool is_ows(char c) {
  return c == ' ' || c == '\t';
}
// `s` without leading and trailing OWS.
inline std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && is_ows(s.front())) {
    s.remove_prefix(1);
  }
  while (!s.empty() && is_ows(s.back())) {
    s.remove_suffix(1);
  }
  return s;
}

// Case-insensitive ASCII comparison of header names and tokens.
bool iequals(std::string_view a, std::string_view b);

// True when the comma-separated list `value` contains `token` (case-insensitive,
// optional whitespace around elements): has_token("keep-alive, Upgrade", "upgrade").
bool has_token(std::string_view value, std::string_view token);

// Ordered header fields stored in one arena string that keeps its capacity
// across clear(): a connection reuses one HeaderList for every request, so a
// request in steady state allocates nothing for its headers. Views returned
// by get()/iteration are valid until the next add()/set().
class HeaderList {
 public:
  struct Field {
    std::string_view name;
    std::string_view value;
  };

  void clear();
  // clear(), and gives the memory to the thread's spares (util/spare.h) for
  // the next list that needs some: a connection going idle holds none. The
  // list stays usable; its next add takes a spare or allocates.
  void release_memory();
  void add(std::string_view name, std::string_view value);
  // Replaces every field named `name` by one field (appended at the end).
  void set(std::string_view name, std::string_view value);
  // Replaces every field named `name` by one field (appended at the end) whose
  // value is their values joined by ", " followed by `element` (RFC 9110 5.3:
  // a list header may be combined this way): X-Forwarded-For's append. Built
  // in the arena, so it allocates nothing in steady state.
  void append_to_list(std::string_view name, std::string_view element);
  // For parsers, to copy a head once instead of field by field: appends
  // `bytes` to the arena and returns the copy. add_adopted() then records a
  // field whose name and value are views into that copy (nothing is copied
  // again). The copy is valid until the next add()/set()/append_to_list().
  std::string_view adopt(std::string_view bytes);
  void add_adopted(std::string_view name, std::string_view value);
  // Removes every field named `name`; returns how many were removed.
  size_t remove(std::string_view name);
  // First field named `name`.
  std::optional<std::string_view> get(std::string_view name) const;
  size_t count(std::string_view name) const;
  size_t size() const;  // live fields
  bool empty() const { return size() == 0; }
  // Bytes of all live names and values (a bound for serialising).
  size_t byte_size() const;

  template <typename F>
  void for_each(F&& f) const {
    for (const auto& e : entries_) {
      if (!e.removed) {
        f(Field{view(e.name_off, e.name_len), view(e.value_off, e.value_len)});
      }
    }
  }

  // Removes, in one pass, every field for which pred(Field) is true; returns
  // how many were removed. Views stay valid (nothing is moved).
  template <typename Pred>
  size_t remove_if(Pred&& pred) {
    size_t n = 0;
    for (auto& e : entries_) {
      if (!e.removed && pred(Field{view(e.name_off, e.name_len), view(e.value_off, e.value_len)})) {
        e.removed = true;
        ++n;
      }
    }
    removed_ += n;
    return n;
  }

  // Appends "Name: value\r\n" for every live field.
  void serialize_to(std::string& out) const;
  // Bytes held (capacity), for an owner that bounds what it keeps.
  size_t memory() const { return arena_.capacity() + entries_.capacity() * sizeof(Entry); }

 private:
  struct Entry {
    uint32_t name_off;
    uint32_t name_len;
    uint32_t value_off;
    uint32_t value_len;
    bool removed;
  };
  // Appends `text` to the arena (which may move) and returns its offset.
  // `text` may point into the arena itself.
  uint32_t append_arena(std::string_view text);
  // A list that released its memory (or never had any) takes a spare
  // arena and entry vector the first time its arena grows.
  void take_spares();
  std::string_view view(uint32_t off, uint32_t len) const {
    return std::string_view(arena_.data() + off, len);
  }

  std::string arena_;
  std::vector<Entry> entries_;
  size_t removed_ = 0;
};

}  // namespace ward::http
