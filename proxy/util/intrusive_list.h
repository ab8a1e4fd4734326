#pragma once

#include <cstddef>

namespace ward::util {

// A doubly-linked list whose links live in the elements (a base class of
// theirs): linking and unlinking allocate nothing and cost a few stores,
// and an element unlinks itself in O(1) without knowing the list. Used for
// what a worker keeps one of per connection (its sessions, its parked
// connections), where a std::unordered_set or std::list would add a heap
// node and a bucket to every connection.
//
// Tag: a type that derives from ListHook<Tag> once per list it can be on;
// the tag tells the hooks apart. Not thread-safe; neither owns anything.
template <typename Tag>
class ListHook {
 public:
  ListHook() = default;
  ListHook(const ListHook&) = delete;
  ListHook& operator=(const ListHook&) = delete;
  ~ListHook() { unlink(); }

  bool linked() const { return next_ != nullptr; }
  // Out of whichever list holds it; nothing when it is on none.
  void unlink() {
    if (next_ != nullptr) {
      prev_->next_ = next_;
      next_->prev_ = prev_;
      prev_ = next_ = nullptr;
    }
  }

 private:
  template <typename T, typename U>
  friend class IntrusiveList;
  ListHook* prev_ = nullptr;
  ListHook* next_ = nullptr;
};

// T derives from ListHook<Tag>. A circular list around a sentinel.
template <typename T, typename Tag = T>
class IntrusiveList {
 public:
  using Hook = ListHook<Tag>;

  IntrusiveList() { head_.prev_ = head_.next_ = &head_; }
  IntrusiveList(const IntrusiveList&) = delete;
  IntrusiveList& operator=(const IntrusiveList&) = delete;
  // The elements still on it are unlinked (they outlive no list).
  ~IntrusiveList() {
    while (!empty()) {
      head_.next_->unlink();
    }
    head_.prev_ = head_.next_ = nullptr;
  }

  bool empty() const { return head_.next_ == &head_; }
  size_t size() const {
    size_t n = 0;
    for (const Hook* h = head_.next_; h != &head_; h = h->next_) {
      ++n;
    }
    return n;
  }
  // Null when empty.
  T* front() const { return empty() ? nullptr : element(head_.next_); }
  T* back() const { return empty() ? nullptr : element(head_.prev_); }
  // The element after `t`, null at the end.
  T* next(T& t) const { return hook(t).next_ == &head_ ? nullptr : element(hook(t).next_); }
  T* prev(T& t) const { return hook(t).prev_ == &head_ ? nullptr : element(hook(t).prev_); }

  // `t` must be on no list.
  void push_back(T& t) { insert_before(head_, hook(t)); }
  // Before `pos`, which is on this list.
  void insert_before(T& pos, T& t) { insert_before(hook(pos), hook(t)); }

 private:
  static Hook& hook(T& t) { return static_cast<Hook&>(t); }
  static T* element(Hook* h) { return static_cast<T*>(h); }
  static T* element(const Hook* h) { return static_cast<T*>(const_cast<Hook*>(h)); }
  static void insert_before(Hook& pos, Hook& h) {
    h.prev_ = pos.prev_;
    h.next_ = &pos;
    pos.prev_->next_ = &h;
    pos.prev_ = &h;
  }

  Hook head_;
};

}  // namespace ward::util
