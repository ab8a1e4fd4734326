#include "proxy/util/intrusive_list.h"

#include <gtest/gtest.h>

#include <vector>

namespace ward::util {
namespace {

struct A;
struct B;
// An element on two lists at once, as an H1Session is (its worker's
// sessions, and the parking lot while it idles).
struct Item : ListHook<A>, ListHook<B> {
  explicit Item(int v) : value(v) {}
  int value;
};

template <typename Tag>
std::vector<int> values(const IntrusiveList<Item, Tag>& list) {
  std::vector<int> out;
  for (Item* i = list.front(); i != nullptr; i = list.next(*i)) {
    out.push_back(i->value);
  }
  return out;
}

TEST(IntrusiveListTest, KeepsOrderAndUnlinksFromTheMiddle) {
  IntrusiveList<Item, A> list;
  Item one(1), two(2), three(3);
  EXPECT_TRUE(list.empty());
  EXPECT_EQ(list.front(), nullptr);
  list.push_back(one);
  list.push_back(three);
  list.insert_before(three, two);
  EXPECT_EQ(values(list), (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(list.back(), &three);
  EXPECT_EQ(list.prev(two), &one);
  EXPECT_EQ(list.prev(one), nullptr);
  EXPECT_EQ(list.size(), 3u);
  static_cast<ListHook<A>&>(two).unlink();
  EXPECT_EQ(values(list), (std::vector<int>{1, 3}));
  EXPECT_FALSE(static_cast<ListHook<A>&>(two).linked());
  static_cast<ListHook<A>&>(two).unlink();  // twice: nothing
  EXPECT_EQ(list.size(), 2u);
}

TEST(IntrusiveListTest, AnElementThatDiesLeavesItsLists) {
  IntrusiveList<Item, A> a;
  IntrusiveList<Item, B> b;
  Item keep(1);
  a.push_back(keep);
  {
    Item gone(2);
    a.push_back(gone);
    b.push_back(gone);
    b.push_back(keep);
    EXPECT_EQ(values(b), (std::vector<int>{2, 1}));
  }
  EXPECT_EQ(values(a), std::vector<int>{1});
  EXPECT_EQ(values(b), std::vector<int>{1});
}

TEST(IntrusiveListTest, AListThatDiesFirstUnlinksWhatIsStillOnIt) {
  Item survivor(1);
  {
    IntrusiveList<Item, A> list;
    list.push_back(survivor);
  }
  EXPECT_FALSE(static_cast<ListHook<A>&>(survivor).linked());
  IntrusiveList<Item, A> again;
  again.push_back(survivor);  // may go on another list
  EXPECT_EQ(values(again), std::vector<int>{1});
}

}  // namespace
}  // namespace ward::util
