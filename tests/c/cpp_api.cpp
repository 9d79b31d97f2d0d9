// os_lively.hpp end to end, driven by tests/c_api.rs (built by g++ and
// clang++ with -Wall -Wextra -Werror -Wpedantic, under ASan and UBSan).
//
// Registers, reads back through the client and a view, maps a failure to
// lively::Error with its code and message, and proves that a callback that
// throws does not take the process down: the exception is caught in the
// trampoline, reported (to a handler, then to stderr by default), and the
// subscription keeps delivering. Settings from OSLIVELY_*. Exit 0 on
// success; the driver also checks stderr for the default report.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>

#include "os_lively.hpp"

#define CHECK(cond)                                                                 \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "cpp_api.cpp:%d: CHECK failed: %s\n", __LINE__, #cond); \
      std::exit(1);                                                                 \
    }                                                                               \
  } while (0)

template <typename P>
static bool wait_for(P done) {
  for (int i = 0; i < 200; i++) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

int main() {
  try {
    lively::Client client(lively::Config::from_env());

    lively::Service me("cpp-test", "host-1");
    me.region = "r1";
    me.heartbeat = std::chrono::milliseconds(60000);
    std::string uuid = client.update(me);
    CHECK(uuid.size() == 32);
    CHECK(client.is_up(uuid));
    CHECK(client.is_up("cpp-test", "host-1"));
    auto got = client.get(uuid);
    CHECK(got && got->up && got->region == "r1" && got->heartbeat.count() == 60000);
    CHECK(!client.get("0123456789abcdef0123456789abcdef"));
    lively::Filter by_type;
    by_type.service_type = "cpp-test";
    CHECK(client.list(by_type).size() == 1);
    CHECK(client.stats().lease_id != 0);

    lively::View view(client);
    view.sync(std::chrono::seconds(10));
    CHECK(view.is_up(uuid) && view.list(by_type).size() == 1);

    // Errors carry the code and the library's message.
    try {
      (void)client.is_up("not a uuid");
      CHECK(false);
    } catch (const lively::Error& e) {
      CHECK(e.code() == LIVELY_RESULT_INVALID_ARGUMENT);
      CHECK(std::string(e.what()).find("not a uuid") != std::string::npos);
    }

    // A callback that throws: caught, handed to the handler, and delivery
    // goes on (the REGISTERED event after the throwing EXISTING one).
    std::atomic<int> reported{0}, calls{0};
    lively::set_callback_exception_handler([&reported](const std::string& what) {
      if (what.find("boom") != std::string::npos) reported++;
    });
    auto sub = client.subscribe(
        by_type,
        [&calls](const lively::Event& e) {
          calls++;
          if (e.kind == LIVELY_EVENT_KIND_EXISTING) throw std::runtime_error("boom");
        },
        /*snapshot=*/true);
    CHECK(wait_for([&] { return reported.load() == 1; }));
    lively::Service other("cpp-test", "host-2");
    client.update(other);
    CHECK(wait_for([&] { return calls.load() >= 2; }));

    // The default report goes to stderr; a non-std exception too.
    lively::set_callback_exception_handler(nullptr);
    std::atomic<int> noisy_calls{0};
    auto noisy = client.subscribe(
        by_type,
        [&noisy_calls](const lively::Event&) {
          noisy_calls++;
          throw 42;
        },
        /*snapshot=*/true);
    CHECK(wait_for([&] { return noisy_calls.load() >= 2; }));
    noisy.reset();  // waits for a callback in progress
    sub.cancel();
    sub.reset();

    client.close();
    std::puts("cpp-api ok");
  } catch (const lively::Error& e) {
    std::fprintf(stderr, "cpp_api: %s (code %u)\n", e.what(), static_cast<unsigned>(e.code()));
    return 1;
  }
  return 0;
}
