#include "filters/chain.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "filters/registry.h"

namespace ward::filters {
namespace {

// Records the order of calls into a shared journal; answers when told to.
class Recorder : public Filter {
 public:
  Recorder(std::string name, std::vector<std::string>& journal, bool answer = false)
      : name_(std::move(name)), journal_(journal), answer_(answer) {}

  FilterStatus on_request(RequestContext& ctx) override {
    journal_.push_back("req:" + name_);
    ctx.state->a = 7;
    if (answer_) {
      ctx.reply(429, "rate_limited");
      return FilterStatus::stop;
    }
    return FilterStatus::next;
  }
  void on_response(RequestContext& ctx) override {
    journal_.push_back("resp:" + name_ + (ctx.state->a == 7 ? "" : ":lost-state"));
  }
  void on_log(const RequestContext&) noexcept override { journal_.push_back("log:" + name_); }

 private:
  std::string name_;
  std::vector<std::string>& journal_;
  bool answer_;
};

class FilterChainTest : public ::testing::Test {
 protected:
  std::vector<std::string> journal_;
  RequestContext ctx_;
  FilterState states_[3];
};

TEST_F(FilterChainTest, RequestInOrderResponseInReverse) {
  FilterChain chain;
  chain.add(std::make_unique<Recorder>("a", journal_));
  chain.add(std::make_unique<Recorder>("b", journal_));
  size_t ran = chain.run_request(ctx_, states_);
  EXPECT_EQ(ran, 2u);
  EXPECT_FALSE(ctx_.replied());
  chain.run_response(ctx_, states_, ran);
  chain.run_log(ctx_, ran);
  EXPECT_EQ(journal_,
            (std::vector<std::string>{"req:a", "req:b", "resp:b", "resp:a", "log:a", "log:b"}));
}

TEST_F(FilterChainTest, AnsweringFilterSkipsTheRestButStillSeesTheResponse) {
  FilterChain chain;
  chain.add(std::make_unique<Recorder>("a", journal_));
  chain.add(std::make_unique<Recorder>("limit", journal_, true));
  chain.add(std::make_unique<Recorder>("never", journal_));
  size_t ran = chain.run_request(ctx_, states_);
  EXPECT_EQ(ran, 2u);
  EXPECT_TRUE(ctx_.replied());
  EXPECT_EQ(ctx_.reply_status, 429);
  chain.run_response(ctx_, states_, ran);
  EXPECT_EQ(journal_, (std::vector<std::string>{"req:a", "req:limit", "resp:limit", "resp:a"}));
}

TEST_F(FilterChainTest, StatesAreZeroedForEachRequest) {
  FilterChain chain;
  chain.add(std::make_unique<Recorder>("a", journal_));
  states_[0].a = 99;
  states_[0].b = 5;
  chain.run_request(ctx_, states_);
  EXPECT_EQ(states_[0].a, 7);
  EXPECT_EQ(states_[0].b, 0);
}

// Waits on a store `calls` times, then goes on or answers with the reply's
// integer as the status.
class Waiter : public Filter {
 public:
  Waiter(std::vector<std::string>& journal, int calls) : journal_(journal), calls_(calls) {}

  FilterStatus on_request(RequestContext& ctx) override {
    journal_.push_back("req:wait");
    ctx.state->a = 7;
    return call(ctx);
  }
  FilterStatus on_store_reply(RequestContext& ctx, const StoreResult& r) override {
    journal_.push_back("reply:" + (r.ok ? std::to_string(r.reply->integer) : std::string(r.error)) +
                       (ctx.state->a == 7 ? "" : ":lost-state"));
    if (--calls_ > 0) {
      return call(ctx);
    }
    if (r.ok && r.reply->integer >= 400) {
      ctx.reply(static_cast<int>(r.reply->integer));
      return FilterStatus::stop;
    }
    return FilterStatus::next;
  }
  void on_response(RequestContext&) override { journal_.push_back("resp:wait"); }

 private:
  FilterStatus call(RequestContext& ctx) {
    ctx.store_call.address = &address_;
    ctx.store_call.command = store::encode_command({"PING"});
    return FilterStatus::wait;
  }
  std::vector<std::string>& journal_;
  int calls_;
  store::RedisAddress address_;
};

TEST_F(FilterChainTest, WaitingFilterStopsTheWalkUntilItsReplyThenTheRestRun) {
  FilterChain chain;
  chain.add(std::make_unique<Recorder>("a", journal_));
  chain.add(std::make_unique<Waiter>(journal_, 2));
  chain.add(std::make_unique<Recorder>("c", journal_));
  size_t ran = chain.run_request(ctx_, states_);
  EXPECT_EQ(ran, 2u);
  ASSERT_TRUE(ctx_.waiting());
  EXPECT_FALSE(ctx_.replied());
  store::Reply reply;
  reply.type = store::Reply::Type::integer;
  reply.integer = 1;
  ran = chain.resume_request(ctx_, states_, ran, StoreResult{true, &reply, {}});
  EXPECT_EQ(ran, 2u);
  ASSERT_TRUE(ctx_.waiting());  // it asked for a second call
  ran = chain.resume_request(ctx_, states_, ran, StoreResult{false, nullptr, "timeout"});
  EXPECT_EQ(ran, 3u);
  EXPECT_FALSE(ctx_.waiting());
  chain.run_response(ctx_, states_, ran);
  EXPECT_EQ(journal_, (std::vector<std::string>{"req:a", "req:wait", "reply:1", "reply:timeout",
                                                "req:c", "resp:c", "resp:wait", "resp:a"}));
}

TEST_F(FilterChainTest, WaitingFilterMayAnswerFromTheReply) {
  FilterChain chain;
  chain.add(std::make_unique<Waiter>(journal_, 1));
  chain.add(std::make_unique<Recorder>("never", journal_));
  size_t ran = chain.run_request(ctx_, states_);
  store::Reply reply;
  reply.type = store::Reply::Type::integer;
  reply.integer = 429;
  ran = chain.resume_request(ctx_, states_, ran, StoreResult{true, &reply, {}});
  EXPECT_EQ(ran, 1u);
  EXPECT_TRUE(ctx_.replied());
  EXPECT_FALSE(ctx_.waiting());
  EXPECT_EQ(ctx_.reply_status, 429);
  EXPECT_EQ(journal_, (std::vector<std::string>{"req:wait", "reply:429"}));
}

TEST(FilterRegistryTest, BuildLabelsRepeatedFiltersAndSkipsFailedOnes) {
  FilterRegistry registry;
  std::vector<std::string> labels;
  std::vector<std::string> sink;
  registry.add("probe", [&](BuildContext& ctx) -> std::unique_ptr<Filter> {
    labels.push_back(ctx.label);
    if (ctx.spec.options["fail"]) {
      ctx.reader.error(ctx.spec.options.Mark(), "probe: told to fail");
      return nullptr;
    }
    return std::make_unique<Recorder>("p", sink);
  });
  std::vector<config::FilterSpec> specs(3);
  for (auto& s : specs) {
    s.name = "probe";
    s.options = YAML::Load("{}");
  }
  specs[2].options = YAML::Load("{fail: true}");
  config::Reader reader("test.yaml");
  observe::Registry metrics(1);
  RuntimeState runtime;
  FilterChain chain = registry.build(specs, "api", reader, metrics, runtime);
  EXPECT_EQ(chain.size(), 2u);
  EXPECT_EQ(labels, (std::vector<std::string>{"api.probe", "api.probe.2", "api.probe.3"}));
  EXPECT_TRUE(reader.has_errors());
}

TEST(RuntimeStateTest, SameKeyGivesTheSameObject) {
  RuntimeState runtime;
  auto a = runtime.get_or_create<int>("k", [] { return std::make_shared<int>(1); });
  auto b = runtime.get_or_create<int>("k", [] { return std::make_shared<int>(2); });
  auto c = runtime.get_or_create<int>("other", [] { return std::make_shared<int>(3); });
  EXPECT_EQ(a.get(), b.get());
  EXPECT_EQ(*b, 1);
  EXPECT_EQ(*c, 3);
}

}  // namespace
}  // namespace ward::filters
