#include "proxy/http/header_list.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "tests/unit/http/alloc_counter.h"

// Replaceable global allocation functions that count calls (for the
// steady-state tests of this binary). They forward to malloc/free.
namespace {
std::atomic<size_t> g_allocations{0};
}  // namespace

// GCC 12 sees the inlined std::free in these replacements as mismatched with
// operator new (a false positive: both sides are the replacements below).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) {
    return p;
  }
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  return operator new(n);
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}

namespace ward::http::testing {
size_t allocation_count() {
  return g_allocations.load(std::memory_order_relaxed);
}
}  // namespace ward::http::testing

namespace ward::http {
namespace {

class HeaderListTest : public ::testing::Test {
 protected:
  std::vector<std::pair<std::string, std::string>> fields() const {
    std::vector<std::pair<std::string, std::string>> out;
    list_.for_each([&](const HeaderList::Field& f) {
      out.emplace_back(std::string(f.name), std::string(f.value));
    });
    return out;
  }

  HeaderList list_;
};

using Fields = std::vector<std::pair<std::string, std::string>>;

TEST(IequalsTest, ComparesAsciiCaseInsensitively) {
  EXPECT_TRUE(iequals("Content-Length", "content-length"));
  EXPECT_TRUE(iequals("", ""));
  EXPECT_FALSE(iequals("Host", "Hosts"));
  EXPECT_FALSE(iequals("Host", "Hast"));
  // Only ASCII letters fold: '@' (0x40) is not '`' (0x60).
  EXPECT_FALSE(iequals("@", "`"));
  EXPECT_FALSE(iequals("[", "{"));
}

TEST(HasTokenTest, FindsTokenInCommaSeparatedList) {
  EXPECT_TRUE(has_token("keep-alive, Upgrade", "upgrade"));
  EXPECT_TRUE(has_token("close", "close"));
  EXPECT_TRUE(has_token(" \tclose\t ", "close"));
  EXPECT_TRUE(has_token("a,,b , close", "close"));
  EXPECT_FALSE(has_token("closed", "close"));
  EXPECT_FALSE(has_token("keep-alive", "close"));
  EXPECT_FALSE(has_token("", "close"));
  EXPECT_FALSE(has_token("clo se", "close"));
}

TEST_F(HeaderListTest, GetFindsFirstFieldCaseInsensitively) {
  list_.add("Host", "a.example");
  list_.add("X-A", "1");
  list_.add("x-a", "2");
  EXPECT_EQ(list_.get("host"), "a.example");
  EXPECT_EQ(list_.get("X-A"), "1");
  EXPECT_EQ(list_.count("x-A"), 2u);
  EXPECT_FALSE(list_.get("missing").has_value());
  EXPECT_EQ(list_.size(), 3u);
  EXPECT_FALSE(list_.empty());
}

TEST_F(HeaderListTest, EmptyValueIsStored) {
  list_.add("X-Empty", "");
  ASSERT_TRUE(list_.get("x-empty").has_value());
  EXPECT_EQ(*list_.get("x-empty"), "");
}

TEST_F(HeaderListTest, SetReplacesEveryFieldWithOneAtTheEnd) {
  list_.add("A", "1");
  list_.add("B", "2");
  list_.add("a", "3");
  list_.set("A", "new");
  EXPECT_EQ(fields(), (Fields{{"B", "2"}, {"A", "new"}}));
  EXPECT_EQ(list_.size(), 2u);
}

TEST_F(HeaderListTest, RemoveReturnsHowManyWereRemoved) {
  list_.add("A", "1");
  list_.add("B", "2");
  list_.add("a", "3");
  EXPECT_EQ(list_.remove("A"), 2u);
  EXPECT_EQ(list_.remove("A"), 0u);
  EXPECT_EQ(fields(), (Fields{{"B", "2"}}));
  EXPECT_EQ(list_.size(), 1u);
  EXPECT_EQ(list_.count("a"), 0u);
}

TEST_F(HeaderListTest, ByteSizeCountsLiveNamesAndValues) {
  list_.add("Host", "ab");   // 6
  list_.add("X-Gone", "z");  // removed below
  list_.add("Ab", "c");      // 3
  list_.remove("x-gone");
  EXPECT_EQ(list_.byte_size(), 9u);
}

TEST_F(HeaderListTest, SerializeWritesLiveFieldsInOrder) {
  list_.add("Host", "a");
  list_.add("X-Drop", "b");
  list_.add("Accept", "*/*");
  list_.remove("X-Drop");
  std::string out = "GET / HTTP/1.1\r\n";
  list_.serialize_to(out);
  EXPECT_EQ(out, "GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n");
}

TEST_F(HeaderListTest, ClearEmptiesTheList) {
  list_.add("A", "1");
  list_.remove("A");
  list_.add("B", "2");
  list_.clear();
  EXPECT_TRUE(list_.empty());
  EXPECT_EQ(list_.size(), 0u);
  EXPECT_FALSE(list_.get("B").has_value());
  list_.add("C", "3");
  EXPECT_EQ(fields(), (Fields{{"C", "3"}}));
}

TEST_F(HeaderListTest, SteadyStateAfterClearAllocatesNothing) {
  auto fill = [&] {
    list_.clear();
    for (int i = 0; i < 40; ++i) {
      list_.add("X-Some-Header-Name", "a value long enough to need real storage");
    }
    list_.set("Host", "example.com");
    list_.remove("X-Some-Header-Name");
    list_.append_to_list("X-Forwarded-For", "10.0.0.1");
  };
  fill();
  testing::AllocationScope scope;
  for (int round = 0; round < 10; ++round) {
    fill();
  }
  EXPECT_EQ(scope.allocations(), 0u);
}

TEST_F(HeaderListTest, AddWithViewsIntoItsOwnStorageSurvivesGrowth) {
  list_.add("Host", "origin.example");
  // Each add may reallocate the arena; the value is a view into it.
  for (int i = 0; i < 200; ++i) {
    list_.add("Copy", *list_.get("Host"));
  }
  EXPECT_EQ(list_.count("copy"), 200u);
  list_.for_each([](const HeaderList::Field& f) { EXPECT_EQ(f.value, "origin.example"); });
  // The name may alias too.
  std::string_view name;
  list_.for_each([&](const HeaderList::Field& f) { name = f.name; });
  list_.add(name, "x");
  EXPECT_EQ(list_.count("copy"), 201u);
}

TEST_F(HeaderListTest, SetWithViewOfTheReplacedFieldKeepsTheValue) {
  list_.add("X-Forwarded-Host", "h.example");
  for (int i = 0; i < 100; ++i) {
    list_.set("X-Forwarded-Host", *list_.get("x-forwarded-host"));
  }
  EXPECT_EQ(fields(), (Fields{{"X-Forwarded-Host", "h.example"}}));
}

TEST_F(HeaderListTest, AppendToListJoinsEveryFieldAndTheElement) {
  list_.add("X-Forwarded-For", "1.1.1.1");
  list_.add("Host", "h");
  list_.add("x-forwarded-for", "2.2.2.2, 3.3.3.3");
  list_.append_to_list("X-Forwarded-For", "4.4.4.4");
  EXPECT_EQ(fields(),
            (Fields{{"Host", "h"}, {"X-Forwarded-For", "1.1.1.1, 2.2.2.2, 3.3.3.3, 4.4.4.4"}}));
}

TEST_F(HeaderListTest, AppendToListWithoutFieldAddsOne) {
  list_.append_to_list("X-Forwarded-For", "4.4.4.4");
  EXPECT_EQ(fields(), (Fields{{"X-Forwarded-For", "4.4.4.4"}}));
}

TEST_F(HeaderListTest, AppendToListAcceptsAViewIntoItself) {
  list_.add("X-Forwarded-For", "1.1.1.1");
  list_.add("Src", "9.9.9.9");
  for (int i = 0; i < 50; ++i) {
    list_.append_to_list("X-Forwarded-For", *list_.get("src"));
  }
  std::string expected = "1.1.1.1";
  for (int i = 0; i < 50; ++i) {
    expected += ", 9.9.9.9";
  }
  EXPECT_EQ(list_.get("X-Forwarded-For"), expected);
  EXPECT_EQ(list_.count("X-Forwarded-For"), 1u);
}

// A keep-alive connection going idle releases its lists; the next request
// on any connection of the thread takes that memory back without a malloc.
TEST_F(HeaderListTest, ReleasedMemoryIsReusedByTheNextListWithoutAllocating) {
  list_.add("Host", "example.com");
  list_.add("Accept", "*/*");
  list_.release_memory();
  EXPECT_TRUE(list_.empty());
  EXPECT_EQ(list_.byte_size(), 0u);

  HeaderList next;
  testing::AllocationScope scope;
  next.add("Host", "other.example");
  next.add("User-Agent", "test");
  EXPECT_EQ(scope.allocations(), 0u);  // arena and entries came from the spares
  EXPECT_EQ(next.get("host"), "other.example");
  EXPECT_EQ(next.size(), 2u);

  // The released list itself is still usable.
  list_.add("X", "1");
  EXPECT_EQ(list_.get("x"), "1");
}

TEST_F(HeaderListTest, AdoptAfterReleaseTakesSpareMemory) {
  list_.add("A", "1");
  list_.release_memory();
  HeaderList next;
  testing::AllocationScope scope;
  std::string_view copy = next.adopt("Name: value\r\n");
  next.add_adopted(copy.substr(0, 4), copy.substr(6, 5));
  EXPECT_EQ(scope.allocations(), 0u);
  EXPECT_EQ(next.get("name"), "value");
}

}  // namespace
}  // namespace ward::http
