// os_lively.hpp end to end, driven by tests/c_api.rs (built by g++ and
// clang++ with -Wall -Wextra -Werror -Wpedantic, under ASan and UBSan).
//
// Registers, reads back through the client and a view, maps a failure to
// lively::Error with its code and message, and proves that a callback that
// throws does not take the process down: the exception is caught in the
// trampoline, reported (to a handler, then to stderr by default), and the
// subscription keeps delivering. Also: every std::string argument holding
// a NUL character is refused, naming it, before C could cut it short (the
// driver then checks etcd holds none of those names); events carry
// enum class kinds and reasons with names; a callback cancels its own
// subscription on its first event, a snapshot event or a live one, and
// gets no further call. Settings from OSLIVELY_*. Exit 0 on success; the
// driver also checks stderr for the default report.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

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

using namespace std::string_literals;

// Kinds and reasons are enum classes with names, as Status.
static_assert(std::is_same_v<decltype(lively::Event::kind), lively::EventKind>);
static_assert(std::is_same_v<decltype(lively::Event::reason), lively::DownReason>);
static_assert(!std::is_convertible_v<lively::EventKind, int>);

/// Expects `call` to throw lively::Error INVALID_ARGUMENT naming `what`.
static void refused(const char* what, const std::function<void()>& call, int line) {
  try {
    call();
  } catch (const lively::Error& e) {
    if (e.code() == LIVELY_RESULT_INVALID_ARGUMENT &&
        std::string(e.what()).find(what) != std::string::npos &&
        std::string(e.what()).find("NUL") != std::string::npos)
      return;
    std::fprintf(stderr, "cpp_api.cpp:%d: %s: wrong error: %s (code %u)\n", line, what, e.what(),
                 static_cast<unsigned>(e.code()));
    std::exit(1);
  }
  std::fprintf(stderr, "cpp_api.cpp:%d: %s holding a NUL was not refused\n", line, what);
  std::exit(1);
}
#define REFUSED(what, ...) refused(what, [&] { __VA_ARGS__; }, __LINE__)

/// Counts the callable's destruction (the subscription's release): after
/// it, no call can come.
struct Released {
  std::atomic<int>* count;
  explicit Released(std::atomic<int>* c) : count(c) {}
  Released(Released&& o) noexcept : count(std::exchange(o.count, nullptr)) {}
  Released(const Released&) = delete;
  Released& operator=(const Released&) = delete;
  Released& operator=(Released&&) = delete;
  ~Released() {
    if (count != nullptr) ++*count;
  }
};

/// Every std::string argument of the header, each holding a NUL.
static void nul_arguments_are_refused(const lively::Client& client, const std::string& uuid) {
  const std::string nul_uuid = uuid.substr(0, 16) + "\0"s + uuid.substr(17);
  lively::Service bad("cpp-nul\0evil"s, "host-1");
  REFUSED("service_type", (void)client.update(bad));
  bad = lively::Service("cpp-test", "host-nul\0x"s);
  REFUSED("host", (void)client.update(bad));
  bad = lively::Service("cpp-test", "host-3");
  bad.region = "r-nul\0x"s;
  REFUSED("region", (void)client.update(bad));
  bad.region.clear();
  bad.maintenance_note = "nul\0note"s;
  REFUSED("maintenance_note", (void)client.update(bad));
  bad.maintenance_note.clear();
  bad.uuid = nul_uuid;
  REFUSED("uuid", (void)client.update(bad));
  REFUSED("uuid", client.heartbeat(nul_uuid));
  REFUSED("uuid", (void)client.is_up(nul_uuid));
  REFUSED("service_type", (void)client.is_up("cpp-test\0x"s, "host-1"));
  REFUSED("host", (void)client.is_up("cpp-test", "host-1\0x"s));
  REFUSED("uuid", (void)client.get(nul_uuid));
  REFUSED("service_type", (void)client.get("cpp-test\0x"s, "host-1"));
  REFUSED("host", (void)client.get("cpp-test", "host-1\0x"s));
  REFUSED("uuid", client.down(nul_uuid));
  REFUSED("note", client.down(uuid, "nul\0note"s));
  REFUSED("uuid", client.up(nul_uuid));
  REFUSED("uuid", (void)client.remove(nul_uuid));
  for (auto field : {&lively::Filter::uuid, &lively::Filter::service_type, &lively::Filter::host,
                     &lively::Filter::region}) {
    lively::Filter f;
    f.*field = "cpp-test\0x"s;
    REFUSED("lively::Filter", (void)client.list(f));
    REFUSED("lively::Filter", (void)client.subscribe(f, [](const lively::Event&) {}));
  }
  lively::View view(client);
  REFUSED("uuid", (void)view.is_up(nul_uuid));
  REFUSED("service_type", (void)view.is_up("cpp-test\0x"s, "host-1"));
  REFUSED("host", (void)view.is_up("cpp-test", "host-1\0x"s));
  REFUSED("uuid", (void)view.get(nul_uuid));
  lively::Filter f;
  f.host = "host-1\0x"s;
  REFUSED("lively::Filter", (void)view.list(f));
  lively::Config config;
  REFUSED("endpoints", config.endpoints("http://localhost:1\0,x"s));
  REFUSED("endpoints", config.endpoints(std::vector<std::string>{"localhost:1", "x\0y"s}));
  REFUSED("name", config.name_space("prod\0x"s));
  REFUSED("user", config.user("root\0x"s, "pw"));
  REFUSED("password", config.user("root", "pw\0x"s));
  REFUSED("path", config.tls_ca_file("/ca\0.pem"s));
  REFUSED("cert_path", config.tls_client_cert("/c\0.pem"s, "/k.pem"));
  REFUSED("key_path", config.tls_client_cert("/c.pem", "/k\0.pem"s));
  REFUSED("name", config.tls_server_name("etcd\0x"s));
  // Still what it was: nothing was changed by the refused calls.
  CHECK(client.is_up(uuid));
  CHECK(client.get(uuid)->maintenance_note.empty());
}

int main() {
  try {
    CHECK(std::strcmp(lively::name(lively::Status::Up), "UP") == 0);
    CHECK(std::strcmp(lively::name(lively::EventKind::Existing), "EXISTING") == 0);
    CHECK(std::strcmp(lively::name(lively::EventKind::Resync), "RESYNC") == 0);
    CHECK(std::strcmp(lively::name(lively::DownReason::Expired), "EXPIRED") == 0);
    CHECK(std::strcmp(lively::name(lively::DownReason::None), "NONE") == 0);
    CHECK(std::strcmp(lively::name(static_cast<lively::DownReason>(99)), "UNKNOWN") == 0);

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
    CHECK(client.get("cpp-test", "host-1")->uuid == uuid);
    CHECK(!client.get("cpp-test", "no-such-host"));
    lively::Filter by_type;
    by_type.service_type = "cpp-test";
    CHECK(client.list(by_type).size() == 1);
    CHECK(client.stats().lease_id != 0);
    nul_arguments_are_refused(client, uuid);

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
          if (e.kind == lively::EventKind::Existing) throw std::runtime_error("boom");
        },
        /*snapshot=*/true);
    CHECK(wait_for([&] { return reported.load() == 1; }));
    lively::Service other("cpp-test", "host-2");
    (void)client.update(other);
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
    lively::set_callback_exception_handler([](const std::string& what) {
      std::fprintf(stderr, "cpp_api: unexpected callback exception: %s\n", what.c_str());
      std::exit(1);
    });

    // A callback that cancels itself on its first event gets no other
    // call, though two snapshot events were queued at once: the callable
    // is destroyed once it returned, and never called again.
    {
      std::atomic<int> calls{0}, released{0};
      lively::EventKind first = lively::EventKind::Resync;
      auto self_ending = client.subscribe(
          by_type,
          [&calls, &first, guard = Released(&released)](const lively::Event& e,
                                                        lively::CurrentSubscription& self) {
            if (calls++ == 0) first = e.kind;
            self.cancel();
            self.cancel();  // twice is fine
          },
          /*snapshot=*/true);
      CHECK(wait_for([&] { return released.load() == 1; }));
      CHECK(calls.load() == 1);
      CHECK(first == lively::EventKind::Existing);
      // The handle stays valid after the callback cancelled it.
      self_ending.cancel();
      self_ending.reset();
      CHECK(calls.load() == 1 && released.load() == 1);
    }
    // The same on a live change (no snapshot), with more changes after it.
    {
      std::atomic<int> calls{0}, released{0};
      auto self_ending = client.subscribe(
          by_type, [&calls, guard = Released(&released)](const lively::Event&,
                                                         lively::CurrentSubscription& self) {
            calls++;
            self.cancel();
          });
      for (int i = 0; i < 3; i++) {
        lively::Service changed("cpp-test", "host-2");
        changed.maintenance_note = "change " + std::to_string(i);
        (void)client.update(changed);
      }
      CHECK(wait_for([&] { return released.load() == 1; }));
      CHECK(calls.load() == 1);
    }
    // Outside a callback there is nothing to cancel.
    CHECK(lively_subscription_cancel_current() == LIVELY_RESULT_INVALID_ARGUMENT);
    lively::set_callback_exception_handler(nullptr);

    client.close();
    std::puts("cpp-api ok");
  } catch (const lively::Error& e) {
    std::fprintf(stderr, "cpp_api: %s (code %u)\n", e.what(), static_cast<unsigned>(e.code()));
    return 1;
  }
  return 0;
}
