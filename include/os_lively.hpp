/*
 * os-lively: service liveness on etcd v3, C++17 API.
 *
 * Header-only, over the C API of os_lively.h (link with -los_lively, as for
 * C). Guide: docs/cpp.md.
 *
 *   lively::Client client(lively::Config::from_env());
 *   lively::Service me("nova-compute", "host-7");
 *   std::string uuid = client.update(me);
 *   bool up = client.is_up(uuid);
 *   auto sub = client.subscribe({}, [](const lively::Event& e) { ... });
 *
 * - Handles are RAII: Client, View and Subscription free their C handle in
 *   their destructor (Client is a shared handle: copies share one
 *   connection; View and Subscription are move-only).
 * - Records are values: Service, Event, Filter own their strings.
 * - A failed call throws lively::Error, carrying the lively_result code and
 *   the library's message (lively_last_error()).
 * - Callbacks are any callable. The library calls them from its own
 *   threads through noexcept trampolines: an exception a callback throws
 *   is caught there and reported to the handler set with
 *   lively::set_callback_exception_handler() (default: one line on
 *   stderr); the subscription and the process live on. Nothing unwinds
 *   into the library.
 */
#ifndef OS_LIVELY_HPP
#define OS_LIVELY_HPP

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "os_lively.h"

namespace lively {

/// A failed call: what was called, the library's message, and its code.
class Error : public std::runtime_error {
 public:
  Error(const std::string& message, lively_result code) : std::runtime_error(message), code_(code) {}
  /// The lively_result of the failed call (LIVELY_RESULT_TIMEOUT, ...).
  lively_result code() const noexcept { return code_; }

 private:
  lively_result code_;
};

/// Called with a description when a callback throws (on a library thread).
using CallbackExceptionHandler = std::function<void(const std::string& what)>;

namespace detail {

inline std::mutex& handler_mutex() {
  static std::mutex m;
  return m;
}

inline CallbackExceptionHandler& handler() {
  static CallbackExceptionHandler h;
  return h;
}

/// Reports the exception being handled; never throws (a handler that
/// throws is itself reported on stderr).
inline void report_callback_exception(const char* where) noexcept {
  std::string what;
  try {
    throw;
  } catch (const std::exception& e) {
    what = std::string(where) + " threw: " + e.what();
  } catch (...) {
    what = std::string(where) + " threw a non-std::exception";
  }
  try {
    CallbackExceptionHandler h;
    {
      std::lock_guard<std::mutex> lock(handler_mutex());
      h = handler();
    }
    if (h) {
      h(what);
      return;
    }
  } catch (...) {
    what += " (and the exception handler threw)";
  }
  std::fprintf(stderr, "os_lively.hpp: %s\n", what.c_str());
}

[[noreturn]] inline void fail(const char* what, lively_result rc) {
  const char* message = lively_last_error();
  if (message == nullptr || *message == '\0') message = lively_result_str(rc);
  throw Error(std::string(what) + ": " + message, rc);
}

inline void check(lively_result rc, const char* what) {
  if (rc != LIVELY_RESULT_OK) fail(what, rc);
}

inline std::string text(const char* s) { return s != nullptr ? std::string(s) : std::string(); }

inline const char* opt(const std::optional<std::string>& s) { return s ? s->c_str() : nullptr; }

}  // namespace detail

/// Replaces what happens when a callback throws (default: a line on
/// stderr). Thread-safe; pass nullptr to restore the default.
inline void set_callback_exception_handler(CallbackExceptionHandler handler) {
  std::lock_guard<std::mutex> lock(detail::handler_mutex());
  detail::handler() = std::move(handler);
}

/// A service's declared (or effective) status.
enum class Status : uint32_t { Up = LIVELY_STATUS_UP, Down = LIVELY_STATUS_DOWN };

/// A service record as a value. As input to Client::update(), uuid may be
/// empty (the type+host's record is taken over, or a uuid generated); the
/// output-only fields (up, forced_down, heartbeat_missed) are ignored.
struct Service {
  std::string uuid;
  std::string service_type;
  std::string host;
  Status status = Status::Up;
  std::string region;
  uint64_t maintenance_start = 0;  ///< seconds since the epoch, 0: none
  uint64_t maintenance_end = 0;    ///< seconds since the epoch, 0: none
  std::string maintenance_note;
  std::chrono::milliseconds heartbeat{0};  ///< deadline; 0 keeps the current one
  bool exclusive = false;                  ///< input: refuse to take over a live holder
  bool forced_down = false;                ///< output: an operator holds it DOWN
  bool heartbeat_missed = false;           ///< output: DOWN for a missed deadline
  bool up = false;                         ///< output: effectively UP when read

  Service() = default;
  Service(std::string type, std::string host_name)
      : service_type(std::move(type)), host(std::move(host_name)) {}

  /// A copy of a record the library returned.
  static Service from(const lively_service_record& r, bool effectively_up) {
    Service s;
    s.uuid = detail::text(r.uuid);
    s.service_type = detail::text(r.service_type);
    s.host = detail::text(r.host);
    s.status = static_cast<Status>(r.status);
    s.region = detail::text(r.region);
    s.maintenance_start = r.maintenance_start;
    s.maintenance_end = r.maintenance_end;
    s.maintenance_note = detail::text(r.maintenance_note);
    s.heartbeat = std::chrono::milliseconds(r.heartbeat_ms);
    s.forced_down = r.forced_down;
    s.heartbeat_missed = r.heartbeat_missed;
    s.up = effectively_up;
    return s;
  }
};

/// Which services a list or subscription covers; every set field narrows
/// it (status: lists only).
struct Filter {
  std::optional<std::string> uuid;
  std::optional<std::string> service_type;
  std::optional<std::string> host;
  std::optional<std::string> region;
  std::optional<Status> status;

  /// The C view; valid while this Filter lives unchanged.
  lively_filter c() const {
    lively_filter f = LIVELY_FILTER_INIT;
    f.uuid = detail::opt(uuid);
    f.service_type = detail::opt(service_type);
    f.host = detail::opt(host);
    f.region = detail::opt(region);
    if (status) {
      f.has_status = true;
      f.status = static_cast<uint32_t>(*status);
    }
    return f;
  }
};

/// One change of one service, copied out of the library's event.
struct Event {
  lively_event_kind kind = LIVELY_EVENT_KIND_EXISTING;
  lively_down_reason reason = LIVELY_DOWN_REASON_NONE;
  std::string uuid;
  std::string service_type;
  std::string host;
  std::string region;
  std::optional<Status> old_status;  ///< none: did not exist
  std::optional<Status> new_status;  ///< none: no longer exists
  std::optional<Service> service;
  int64_t revision = 0;

  static Event from(const lively_event& e) {
    auto status = [](int32_t v) -> std::optional<Status> {
      if (v == LIVELY_STATUS_NONE) return std::nullopt;
      return static_cast<Status>(v);
    };
    Event out;
    out.kind = e.kind;
    out.reason = e.reason;
    out.uuid = detail::text(e.uuid);
    out.service_type = detail::text(e.service_type);
    out.host = detail::text(e.host);
    out.region = detail::text(e.region);
    out.old_status = status(e.old_status);
    out.new_status = status(e.new_status);
    if (e.service != nullptr)
      out.service = Service::from(*e.service, out.new_status == Status::Up);
    out.revision = e.revision;
    return out;
  }
};

/// Connection settings (move-only; the client copies them).
class Config {
 public:
  /// Defaults (endpoint http://127.0.0.1:2379).
  Config() : handle_(lively_config_new()) {
    if (!handle_) detail::fail("lively_config_new", LIVELY_RESULT_PANIC);
  }
  /// From the OSLIVELY_* environment variables.
  static Config from_env() {
    lively_config* raw = nullptr;
    detail::check(lively_config_from_env(&raw), "lively_config_from_env");
    return Config(raw);
  }
  /// Comma-separated endpoints, e.g. "http://10.0.0.1:2379,http://10.0.0.2:2379".
  Config& endpoints(const std::string& list) {
    detail::check(lively_config_set_endpoints(handle(), list.c_str()), "lively_config_set_endpoints");
    return *this;
  }
  Config& name_space(const std::string& name) {
    detail::check(lively_config_set_namespace(handle(), name.c_str()), "lively_config_set_namespace");
    return *this;
  }
  Config& status_ttl(std::chrono::seconds ttl) {
    detail::check(lively_config_set_status_ttl(handle(), static_cast<uint64_t>(ttl.count())),
                  "lively_config_set_status_ttl");
    return *this;
  }
  Config& request_timeout(std::chrono::milliseconds t) {
    detail::check(lively_config_set_request_timeout_ms(handle(), static_cast<uint64_t>(t.count())),
                  "lively_config_set_request_timeout_ms");
    return *this;
  }
  lively_config* handle() const noexcept { return handle_.get(); }

 private:
  struct Free {
    void operator()(lively_config* c) const noexcept { lively_config_free(c); }
  };
  explicit Config(lively_config* raw) : handle_(raw) {}
  std::unique_ptr<lively_config, Free> handle_;
};

/// A subscription: events go to its callable until it is destroyed or
/// cancel()ed. Move-only. Its destructor cancels, and once it returns no
/// further call starts (outside the callback itself).
class Subscription {
 public:
  Subscription() = default;
  explicit Subscription(lively_subscription* raw) noexcept : handle_(raw) {}
  /// Stops delivery; safe from any thread, also from inside the callback.
  void cancel() {
    if (handle_) detail::check(lively_subscription_cancel(handle_.get()), "lively_subscription_cancel");
  }
  /// Cancels and frees now (as the destructor does).
  void reset() noexcept { handle_.reset(); }
  explicit operator bool() const noexcept { return static_cast<bool>(handle_); }
  lively_subscription* handle() const noexcept { return handle_.get(); }

 private:
  struct Free {
    void operator()(lively_subscription* s) const noexcept { lively_subscription_free(s); }
  };
  std::unique_ptr<lively_subscription, Free> handle_;
};

class View;

/// A connection to etcd. Copies share one connection, which lives until
/// the last copy (and every View and Subscription made from it) is gone,
/// or close() ends it for all.
class Client {
 public:
  explicit Client(const Config& config) {
    const lively_client* raw = nullptr;
    detail::check(lively_client_connect(config.handle(), &raw), "lively_client_connect");
    handle_.reset(raw, Free());
  }

  /// Registers or updates a service; returns its uuid.
  std::string update(const Service& s) const {
    lively_service c = LIVELY_SERVICE_INIT;
    c.uuid = s.uuid.empty() ? nullptr : s.uuid.c_str();
    c.service_type = s.service_type.c_str();
    c.host = s.host.c_str();
    c.status = static_cast<uint32_t>(s.status);
    c.region = s.region.c_str();
    c.maintenance_start = s.maintenance_start;
    c.maintenance_end = s.maintenance_end;
    c.maintenance_note = s.maintenance_note.c_str();
    c.heartbeat_ms = static_cast<uint64_t>(s.heartbeat.count());
    c.exclusive = s.exclusive;
    char uuid[LIVELY_UUID_BUF_LEN];
    detail::check(lively_client_update(handle(), &c, uuid, sizeof uuid), "lively_client_update");
    return uuid;
  }

  /// Checks in for a service registered with a heartbeat deadline (local).
  void heartbeat(const std::string& uuid) const {
    detail::check(lively_client_heartbeat(handle(), uuid.c_str()), "lively_client_heartbeat");
  }

  bool is_up(const std::string& uuid) const {
    bool up = false;
    detail::check(lively_client_is_up(handle(), uuid.c_str(), &up), "lively_client_is_up");
    return up;
  }

  bool is_up(const std::string& type, const std::string& host) const {
    bool up = false;
    detail::check(lively_client_is_up_by_type_host(handle(), type.c_str(), host.c_str(), &up),
                  "lively_client_is_up_by_type_host");
    return up;
  }

  /// The record and effective status, or nothing for an unknown uuid.
  std::optional<Service> get(const std::string& uuid) const {
    lively_service_info* info = nullptr;
    lively_result rc = lively_client_get(handle(), uuid.c_str(), &info);
    if (rc == LIVELY_RESULT_NOT_FOUND) return std::nullopt;
    detail::check(rc, "lively_client_get");
    Service s = Service::from(info->service, info->up);
    lively_service_info_free(info);
    return s;
  }

  std::vector<Service> list(const Filter& filter = {}) const {
    lively_filter f = filter.c();
    lively_service_list* list = nullptr;
    detail::check(lively_client_list(handle(), &f, &list), "lively_client_list");
    return take(list);
  }

  /// Forces a service DOWN (maintenance) until up() or the window's end.
  void down(const std::string& uuid, const std::string& note = {}, uint64_t start = 0,
            uint64_t end = 0) const {
    detail::check(lively_client_down(handle(), uuid.c_str(), note.c_str(), start, end),
                  "lively_client_down");
  }

  void up(const std::string& uuid) const {
    detail::check(lively_client_up(handle(), uuid.c_str()), "lively_client_up");
  }

  /// Deletes a service; false if there was none.
  bool remove(const std::string& uuid) const {
    bool deleted = false;
    detail::check(lively_client_delete(handle(), uuid.c_str(), &deleted), "lively_client_delete");
    return deleted;
  }

  lively_stats stats() const {
    lively_stats s = LIVELY_STATS_INIT;
    detail::check(lively_client_stats(handle(), &s), "lively_client_stats");
    return s;
  }

  /// Calls `callback(const lively::Event&)` for each change of the
  /// matching services, on a library thread, one call at a time. An
  /// exception it throws is caught and reported (see
  /// set_callback_exception_handler()); delivery goes on.
  template <typename F>
  Subscription subscribe(const Filter& filter, F callback, bool snapshot = false,
                         size_t queue_capacity = 0) const {
    auto boxed = std::make_unique<F>(std::move(callback));
    lively_filter f = filter.c();
    lively_subscribe_options options = LIVELY_SUBSCRIBE_OPTIONS_INIT;
    options.snapshot = snapshot;
    options.queue_capacity = queue_capacity;
    lively_subscription* raw = nullptr;
    detail::check(lively_client_subscribe(handle(), &f, &options, &on_event<F>, boxed.get(),
                                          &release<F>, &raw),
                  "lively_client_subscribe");
    boxed.release();  // the release callback owns it now
    return Subscription(raw);
  }

  /// Revokes the lease (services DOWN at once) and ends every handle's use.
  void close() const { detail::check(lively_client_close(handle()), "lively_client_close"); }

  const lively_client* handle() const noexcept { return handle_.get(); }

 private:
  friend class View;
  struct Free {
    void operator()(const lively_client* c) const noexcept { lively_client_free(c); }
  };

  static std::vector<Service> take(lively_service_list* list) {
    std::vector<Service> out;
    try {
      out.reserve(list->len);
      for (size_t i = 0; i < list->len; i++)
        out.push_back(Service::from(list->items[i].service, list->items[i].up));
    } catch (...) {
      lively_service_list_free(list);
      throw;
    }
    lively_service_list_free(list);
    return out;
  }

  // The trampolines: C-callable, noexcept, so nothing unwinds into Rust.
  template <typename F>
  static void on_event(void* userdata, const lively_event* event) noexcept {
    try {
      (*static_cast<F*>(userdata))(Event::from(*event));
    } catch (...) {
      detail::report_callback_exception("a lively::Client::subscribe callback");
    }
  }

  template <typename F>
  static void release(void* userdata) noexcept {
    try {
      delete static_cast<F*>(userdata);
    } catch (...) {
      detail::report_callback_exception("a subscription callback's destructor");
    }
  }

  std::shared_ptr<const lively_client> handle_;
};

/// A local, watch-fed copy of the namespace: reads without a round trip.
/// Move-only; keeps the client's connection alive.
class View {
 public:
  /// `stale_after`: 0 = the library's default policy (see lively_view_new()).
  explicit View(const Client& client, std::chrono::milliseconds stale_after = {}) {
    const lively_view* raw = nullptr;
    detail::check(
        lively_view_new(client.handle(), static_cast<uint64_t>(stale_after.count()), &raw),
        "lively_view_new");
    handle_.reset(raw);
  }

  /// Waits until the view has caught up with etcd.
  void sync(std::chrono::milliseconds timeout) const {
    detail::check(lively_view_sync(handle(), static_cast<uint64_t>(timeout.count())),
                  "lively_view_sync");
  }

  bool is_up(const std::string& uuid) const {
    bool up = false;
    detail::check(lively_view_is_up(handle(), uuid.c_str(), &up), "lively_view_is_up");
    return up;
  }

  bool is_up(const std::string& type, const std::string& host) const {
    bool up = false;
    detail::check(lively_view_is_up_by_type_host(handle(), type.c_str(), host.c_str(), &up),
                  "lively_view_is_up_by_type_host");
    return up;
  }

  std::optional<Service> get(const std::string& uuid) const {
    lively_service_info* info = nullptr;
    lively_result rc = lively_view_get(handle(), uuid.c_str(), &info);
    if (rc == LIVELY_RESULT_NOT_FOUND) return std::nullopt;
    detail::check(rc, "lively_view_get");
    Service s = Service::from(info->service, info->up);
    lively_service_info_free(info);
    return s;
  }

  std::vector<Service> list(const Filter& filter = {}) const {
    lively_filter f = filter.c();
    lively_service_list* list = nullptr;
    detail::check(lively_view_list(handle(), &f, &list), "lively_view_list");
    return Client::take(list);
  }

  bool is_connected() const noexcept { return lively_view_is_connected(handle()); }
  int64_t revision() const noexcept { return lively_view_revision(handle()); }
  const lively_view* handle() const noexcept { return handle_.get(); }

 private:
  struct Free {
    void operator()(const lively_view* v) const noexcept { lively_view_free(v); }
  };
  std::unique_ptr<const lively_view, Free> handle_;
};

/// The library's version string, e.g. "0.1.0".
inline std::string version() { return lively_version(); }

}  // namespace lively

#endif /* OS_LIVELY_HPP */
