// lively-watch-cxx: the C API from C++ with RAII handles.
//
//   lively-watch-cxx [TYPE]
//
// Prints one line per event, like lively-watch: "<KIND> <uuid> <type>
// <host> <reason> <revision>". Stops on SIGINT or SIGTERM. Settings come
// from the OSLIVELY_* environment variables.
#include <signal.h>

#include <cstdio>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>

#include "os_lively.h"

namespace lively {

// Every failure becomes an exception carrying the code and the message.
class error : public std::runtime_error {
 public:
  error(const std::string& what, lively_result code)
      : std::runtime_error(what + ": " + lively_result_str(code) + " (" + lively_last_error() + ")"),
        code_(code) {}
  lively_result code() const { return code_; }

 private:
  lively_result code_;
};

inline void check(lively_result rc, const char* what) {
  if (rc != LIVELY_RESULT_OK) throw error(what, rc);
}

struct config_deleter {
  void operator()(lively_config* c) const { lively_config_free(c); }
};
struct client_deleter {
  void operator()(const lively_client* c) const { lively_client_free(c); }
};
struct subscription_deleter {
  void operator()(lively_subscription* s) const { lively_subscription_free(s); }
};

using config = std::unique_ptr<lively_config, config_deleter>;
using subscription = std::unique_ptr<lively_subscription, subscription_deleter>;

// A thread-safe client; the handle is shared by copies.
class client {
 public:
  static client from_env() {
    lively_config* raw = nullptr;
    check(lively_config_from_env(&raw), "configuration");
    config cfg(raw);
    const lively_client* c = nullptr;
    check(lively_client_connect(cfg.get(), &c), "connect");
    return client(c);
  }

  bool is_up(const std::string& uuid) const {
    bool up = false;
    check(lively_client_is_up(handle_.get(), uuid.c_str(), &up), "is_up");
    return up;
  }

  // Subscribes with any callable taking `const lively_event&`. The callable
  // is moved to the heap and destroyed by the release callback, after the
  // last event.
  template <typename F>
  subscription subscribe(const lively_filter& filter, bool snapshot, F callback) const {
    auto* boxed = new F(std::move(callback));
    lively_subscribe_options options = LIVELY_SUBSCRIBE_OPTIONS_INIT;
    options.snapshot = snapshot;
    lively_subscription* raw = nullptr;
    lively_result rc = lively_client_subscribe(
        handle_.get(), &filter, &options,
        [](void* userdata, const lively_event* event) { (*static_cast<F*>(userdata))(*event); },
        boxed, [](void* userdata) { delete static_cast<F*>(userdata); }, &raw);
    if (rc != LIVELY_RESULT_OK) {
      delete boxed;  // not taken on failure
      throw error("subscribe", rc);
    }
    return subscription(raw);
  }

 private:
  explicit client(const lively_client* c) : handle_(c, client_deleter()) {}
  std::shared_ptr<const lively_client> handle_;
};

}  // namespace lively

static const char* kind_name(lively_event_kind kind) {
  switch (kind) {
    case LIVELY_EVENT_KIND_EXISTING: return "EXISTING";
    case LIVELY_EVENT_KIND_REGISTERED: return "REGISTERED";
    case LIVELY_EVENT_KIND_UP: return "UP";
    case LIVELY_EVENT_KIND_DOWN: return "DOWN";
    case LIVELY_EVENT_KIND_UPDATED: return "UPDATED";
    case LIVELY_EVENT_KIND_REMOVED: return "REMOVED";
    case LIVELY_EVENT_KIND_RESYNC: return "RESYNC";
  }
  return "?";
}

static const char* reason_name(lively_down_reason reason) {
  switch (reason) {
    case LIVELY_DOWN_REASON_FORCED: return "forced";
    case LIVELY_DOWN_REASON_EXPIRED: return "expired";
    case LIVELY_DOWN_REASON_DELETED: return "deleted";
    case LIVELY_DOWN_REASON_MISSED: return "missed";
    case LIVELY_DOWN_REASON_MOVED: return "moved";
    case LIVELY_DOWN_REASON_LIFTED: return "lifted";
    case LIVELY_DOWN_REASON_CLOSED: return "closed";
    case LIVELY_DOWN_REASON_DECLARED: return "declared";
    case LIVELY_DOWN_REASON_NONE: break;
  }
  return "-";
}

int main(int argc, char** argv) {
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  try {
    auto client = lively::client::from_env();
    lively_filter filter = LIVELY_FILTER_INIT;
    std::string type = argc > 1 ? argv[1] : "";
    if (!type.empty()) filter.service_type = type.c_str();
    unsigned long count = 0;
    auto sub = client.subscribe(filter, true, [&count](const lively_event& e) {
      ++count;  // one call at a time per subscription: no lock needed
      std::printf("%s %s %s %s %s %lld\n", kind_name(e.kind), e.uuid, e.service_type, e.host,
                  reason_name(e.reason), static_cast<long long>(e.revision));
      std::fflush(stdout);
    });
    std::fprintf(stderr, "lively-watch-cxx: watching\n");
    int sig = 0;
    sigwait(&stop, &sig);
    sub.reset();  // no callback starts after this: `count` is ours again
    std::fprintf(stderr, "lively-watch-cxx: %lu events\n", count);
  } catch (const lively::error& e) {
    std::fprintf(stderr, "lively-watch-cxx: %s\n", e.what());
    return 2;
  }
  return 0;
}
