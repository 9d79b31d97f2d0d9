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
 *   // or [](const lively::Event& e, lively::CurrentSubscription& self)
 *   // { ... self.cancel(); } to stop from inside the callback
 *
 * - Handles are RAII: Client, View and Subscription free their C handle in
 *   their destructor (Client is a shared handle: copies share one
 *   connection; View and Subscription are move-only).
 * - Records are values: Service, Event, Filter own their strings.
 * - A failed call throws lively::Error, carrying the lively_result code and
 *   the library's message (lively_last_error()). A std::string argument
 *   holding a NUL character is refused (lively::Error, code
 *   LIVELY_RESULT_INVALID_ARGUMENT, naming the argument) before any C call:
 *   C would see it cut short and act on another name.
 * - A missing service is std::nullopt from get(), not an exception.
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
#include <type_traits>
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

/// A std::string argument as a C string. One holding a NUL character is
/// refused: the C API would see it end there and act on another name
/// (`"typ\0evil"` as `"typ"`).
inline const char* arg(const std::string& s, const char* call, const char* name) {
  const size_t at = s.find('\0');
  if (at != std::string::npos)
    throw Error(std::string(call) + ": " + name + " contains a NUL character at index " +
                    std::to_string(at) + " (a C string would end there)",
                LIVELY_RESULT_INVALID_ARGUMENT);
  return s.c_str();
}

/// As arg(); an absent value is NULL.
inline const char* opt(const std::optional<std::string>& s, const char* call, const char* name) {
  return s ? arg(*s, call, name) : nullptr;
}

}  // namespace detail

/// Replaces what happens when a callback throws (default: a line on
/// stderr). Thread-safe; pass nullptr to restore the default.
inline void set_callback_exception_handler(CallbackExceptionHandler handler) {
  std::lock_guard<std::mutex> lock(detail::handler_mutex());
  detail::handler() = std::move(handler);
}

/// A service's declared (or effective) status.
enum class Status : uint32_t { Up = LIVELY_STATUS_UP, Down = LIVELY_STATUS_DOWN };

/// What happened to a service (lively_event_kind; see os_lively.h).
enum class EventKind : uint32_t {
  Existing = LIVELY_EVENT_KIND_EXISTING,      ///< part of the initial snapshot
  Registered = LIVELY_EVENT_KIND_REGISTERED,  ///< entered the subscription's set
  Up = LIVELY_EVENT_KIND_UP,                  ///< became effectively UP
  Down = LIVELY_EVENT_KIND_DOWN,              ///< stopped being UP; see DownReason
  Updated = LIVELY_EVENT_KIND_UPDATED,        ///< other fields changed
  Removed = LIVELY_EVENT_KIND_REMOVED,        ///< left the set (deleted or moved)
  Resync = LIVELY_EVENT_KIND_RESYNC,          ///< fell behind; differences follow
};

/// Why a service went DOWN or left the set, or that an UP lifted a forced
/// DOWN (lively_down_reason; see os_lively.h); None for other events.
enum class DownReason : uint32_t {
  None = LIVELY_DOWN_REASON_NONE,
  Forced = LIVELY_DOWN_REASON_FORCED,      ///< an operator's down()
  Expired = LIVELY_DOWN_REASON_EXPIRED,    ///< its process stopped keeping it alive (a crash)
  Deleted = LIVELY_DOWN_REASON_DELETED,    ///< its record was deleted
  Missed = LIVELY_DOWN_REASON_MISSED,      ///< its owner missed the heartbeat deadline
  Moved = LIVELY_DOWN_REASON_MOVED,        ///< left the filter, or taken over
  Lifted = LIVELY_DOWN_REASON_LIFTED,      ///< (UP) a forced DOWN was lifted
  Closed = LIVELY_DOWN_REASON_CLOSED,      ///< its client closed cleanly
  Declared = LIVELY_DOWN_REASON_DECLARED,  ///< its owner set it DOWN itself
};

/// "UP" or "DOWN" (as in Rust and Python); "UNKNOWN" for another value.
inline const char* name(Status s) noexcept {
  switch (s) {
    case Status::Up: return "UP";
    case Status::Down: return "DOWN";
  }
  return "UNKNOWN";
}

/// "EXISTING", "REGISTERED", "UP", "DOWN", "UPDATED", "REMOVED",
/// "RESYNC" (the C names without LIVELY_EVENT_KIND_, as Python's
/// EventKind); "UNKNOWN" for a value this header does not know (a newer
/// library).
inline const char* name(EventKind k) noexcept {
  switch (k) {
    case EventKind::Existing: return "EXISTING";
    case EventKind::Registered: return "REGISTERED";
    case EventKind::Up: return "UP";
    case EventKind::Down: return "DOWN";
    case EventKind::Updated: return "UPDATED";
    case EventKind::Removed: return "REMOVED";
    case EventKind::Resync: return "RESYNC";
  }
  return "UNKNOWN";
}

/// "NONE", "FORCED", "EXPIRED", "DELETED", "MISSED", "MOVED", "LIFTED",
/// "CLOSED", "DECLARED" (as Python's DownReason); "UNKNOWN" for a value
/// this header does not know.
inline const char* name(DownReason r) noexcept {
  switch (r) {
    case DownReason::None: return "NONE";
    case DownReason::Forced: return "FORCED";
    case DownReason::Expired: return "EXPIRED";
    case DownReason::Deleted: return "DELETED";
    case DownReason::Missed: return "MISSED";
    case DownReason::Moved: return "MOVED";
    case DownReason::Lifted: return "LIFTED";
    case DownReason::Closed: return "CLOSED";
    case DownReason::Declared: return "DECLARED";
  }
  return "UNKNOWN";
}

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

  /// The C view; valid while this Filter lives unchanged. Throws
  /// lively::Error for a field holding a NUL character.
  [[nodiscard]] lively_filter c() const {
    lively_filter f = LIVELY_FILTER_INIT;
    f.uuid = detail::opt(uuid, "lively::Filter", "uuid");
    f.service_type = detail::opt(service_type, "lively::Filter", "service_type");
    f.host = detail::opt(host, "lively::Filter", "host");
    f.region = detail::opt(region, "lively::Filter", "region");
    if (status) {
      f.has_status = true;
      f.status = static_cast<uint32_t>(*status);
    }
    return f;
  }
};

/// One change of one service, copied out of the library's event.
struct Event {
  EventKind kind = EventKind::Existing;
  DownReason reason = DownReason::None;  ///< None unless DOWN, REMOVED (Moved), UP (Lifted)
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
    out.kind = static_cast<EventKind>(e.kind);
    out.reason = static_cast<DownReason>(e.reason);
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
  /// The library's defaults: endpoint http://localhost:2379, no namespace,
  /// 60 s status TTL, 5 s connect and request timeouts, no authentication.
  Config() : handle_(lively_config_new()) {
    if (!handle_) detail::fail("lively_config_new", LIVELY_RESULT_PANIC);
  }
  /// The defaults overridden by the OSLIVELY_* environment variables
  /// (OSLIVELY_ETCD_ENDPOINTS, OSLIVELY_ETCD_KEY_NAMESPACE, ...: see
  /// lively_config_from_env()); a variable set but invalid throws. The
  /// setters below may still change the result.
  [[nodiscard]] static Config from_env() {
    lively_config* raw = nullptr;
    detail::check(lively_config_from_env(&raw), "lively_config_from_env");
    return Config(raw);
  }
  /// Comma-separated endpoints, e.g. "http://10.0.0.1:2379,http://10.0.0.2:2379".
  Config& endpoints(const std::string& list) {
    detail::check(lively_config_set_endpoints(
                      handle(), detail::arg(list, "lively_config_set_endpoints", "endpoints")),
                  "lively_config_set_endpoints");
    return *this;
  }
  /// One endpoint per element.
  Config& endpoints(const std::vector<std::string>& list) {
    std::vector<const char*> c;
    c.reserve(list.size());
    for (const std::string& e : list)
      c.push_back(detail::arg(e, "lively_config_set_endpoints_array", "endpoints[i]"));
    detail::check(lively_config_set_endpoints_array(handle(), c.data(), c.size()),
                  "lively_config_set_endpoints_array");
    return *this;
  }
  /// The key namespace ("" for none; "prod": keys under /prod/services/).
  Config& name_space(const std::string& name) {
    detail::check(
        lively_config_set_namespace(handle(), detail::arg(name, "lively_config_set_namespace", "name")),
        "lively_config_set_namespace");
    return *this;
  }
  /// How long after its registering process dies a service stays UP.
  Config& status_ttl(std::chrono::seconds ttl) {
    detail::check(lively_config_set_status_ttl(handle(), static_cast<uint64_t>(ttl.count())),
                  "lively_config_set_status_ttl");
    return *this;
  }
  /// How long each call waits for etcd.
  Config& request_timeout(std::chrono::milliseconds t) {
    detail::check(lively_config_set_request_timeout_ms(handle(), static_cast<uint64_t>(t.count())),
                  "lively_config_set_request_timeout_ms");
    return *this;
  }
  /// How long connecting (the Client constructor) waits.
  Config& connect_timeout(std::chrono::milliseconds t) {
    detail::check(lively_config_set_connect_timeout_ms(handle(), static_cast<uint64_t>(t.count())),
                  "lively_config_set_connect_timeout_ms");
    return *this;
  }
  /// Opt-in polling after each call (see lively_config_set_call_polling_us()).
  Config& call_polling(std::chrono::microseconds t) {
    detail::check(lively_config_set_call_polling_us(handle(), static_cast<uint64_t>(t.count())),
                  "lively_config_set_call_polling_us");
    return *this;
  }
  /// etcd user/password authentication (the password is never logged).
  Config& user(const std::string& name, const std::string& password) {
    detail::check(lively_config_set_user(handle(), detail::arg(name, "lively_config_set_user", "user"),
                                         detail::arg(password, "lively_config_set_user", "password")),
                  "lively_config_set_user");
    return *this;
  }
  /// Verifies etcd's certificate against this CA (PEM); endpoints use https://.
  Config& tls_ca_file(const std::string& path) {
    detail::check(lively_config_set_tls_ca_file(
                      handle(), detail::arg(path, "lively_config_set_tls_ca_file", "path")),
                  "lively_config_set_tls_ca_file");
    return *this;
  }
  /// A client certificate and key (PEM files) for mutual TLS.
  Config& tls_client_cert(const std::string& cert_path, const std::string& key_path) {
    detail::check(lively_config_set_tls_client_cert(
                      handle(), detail::arg(cert_path, "lively_config_set_tls_client_cert", "cert_path"),
                      detail::arg(key_path, "lively_config_set_tls_client_cert", "key_path")),
                  "lively_config_set_tls_client_cert");
    return *this;
  }
  /// The name to verify in etcd's certificate (when connecting by address).
  Config& tls_server_name(const std::string& name) {
    detail::check(lively_config_set_tls_server_name(
                      handle(), detail::arg(name, "lively_config_set_tls_server_name", "name")),
                  "lively_config_set_tls_server_name");
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
/// further call starts (outside the callback itself). [[nodiscard]]: a
/// Subscription dropped at once (`client.subscribe(f, cb);`) cancels at
/// once, so the compiler warns.
class [[nodiscard]] Subscription {
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

/// Handed to a subscription callback that takes it as its second
/// parameter: `[](const lively::Event& e, lively::CurrentSubscription& self)`.
/// The callback may run before subscribe() has returned its Subscription
/// (the snapshot's events do), so it cannot reach that object; this needs
/// none (lively_subscription_cancel_current()).
class CurrentSubscription {
 public:
  /// Stops the subscription from inside its callback: this call finishes,
  /// no further one starts, and the callable is destroyed after it
  /// returns. The Subscription object stays valid (destroy it as usual).
  /// Idempotent.
  void cancel() const {
    detail::check(lively_subscription_cancel_current(), "lively_subscription_cancel_current");
  }

 private:
  friend class Client;
  CurrentSubscription() = default;
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
    const char* call = "lively_client_update";
    lively_service c = LIVELY_SERVICE_INIT;
    c.uuid = s.uuid.empty() ? nullptr : detail::arg(s.uuid, call, "uuid");
    c.service_type = detail::arg(s.service_type, call, "service_type");
    c.host = detail::arg(s.host, call, "host");
    c.status = static_cast<uint32_t>(s.status);
    c.region = detail::arg(s.region, call, "region");
    c.maintenance_start = s.maintenance_start;
    c.maintenance_end = s.maintenance_end;
    c.maintenance_note = detail::arg(s.maintenance_note, call, "maintenance_note");
    c.heartbeat_ms = static_cast<uint64_t>(s.heartbeat.count());
    c.exclusive = s.exclusive;
    char uuid[LIVELY_UUID_BUF_LEN];
    detail::check(lively_client_update(handle(), &c, uuid, sizeof uuid), "lively_client_update");
    return uuid;
  }

  /// Checks in for a service registered with a heartbeat deadline (local).
  void heartbeat(const std::string& uuid) const {
    detail::check(
        lively_client_heartbeat(handle(), detail::arg(uuid, "lively_client_heartbeat", "uuid")),
        "lively_client_heartbeat");
  }

  /// Whether the service is effectively UP (false for an unknown uuid).
  [[nodiscard]] bool is_up(const std::string& uuid) const {
    bool up = false;
    detail::check(
        lively_client_is_up(handle(), detail::arg(uuid, "lively_client_is_up", "uuid"), &up),
        "lively_client_is_up");
    return up;
  }

  /// Whether the service registered for type+host is effectively UP.
  [[nodiscard]] bool is_up(const std::string& type, const std::string& host) const {
    const char* call = "lively_client_is_up_by_type_host";
    bool up = false;
    detail::check(lively_client_is_up_by_type_host(handle(), detail::arg(type, call, "service_type"),
                                                   detail::arg(host, call, "host"), &up),
                  call);
    return up;
  }

  /// The record and effective status; std::nullopt for an unknown uuid
  /// (not an exception).
  [[nodiscard]] std::optional<Service> get(const std::string& uuid) const {
    lively_service_info* info = nullptr;
    lively_result rc =
        lively_client_get(handle(), detail::arg(uuid, "lively_client_get", "uuid"), &info);
    if (rc == LIVELY_RESULT_NOT_FOUND) return std::nullopt;
    detail::check(rc, "lively_client_get");
    Service s = Service::from(info->service, info->up);
    lively_service_info_free(info);
    return s;
  }

  /// As get(uuid), for the service registered for type+host.
  [[nodiscard]] std::optional<Service> get(const std::string& type, const std::string& host) const {
    const char* call = "lively_client_get_by_type_host";
    lively_service_info* info = nullptr;
    lively_result rc = lively_client_get_by_type_host(
        handle(), detail::arg(type, call, "service_type"), detail::arg(host, call, "host"), &info);
    if (rc == LIVELY_RESULT_NOT_FOUND) return std::nullopt;
    detail::check(rc, call);
    Service s = Service::from(info->service, info->up);
    lively_service_info_free(info);
    return s;
  }

  /// The services matching `filter` (every field set narrows it).
  [[nodiscard]] std::vector<Service> list(const Filter& filter = {}) const {
    lively_filter f = filter.c();
    lively_service_list* list = nullptr;
    detail::check(lively_client_list(handle(), &f, &list), "lively_client_list");
    return take(list);
  }

  /// Forces a service DOWN (maintenance) until up() or the window's end.
  void down(const std::string& uuid, const std::string& note = {}, uint64_t start = 0,
            uint64_t end = 0) const {
    const char* call = "lively_client_down";
    detail::check(lively_client_down(handle(), detail::arg(uuid, call, "uuid"),
                                     detail::arg(note, call, "note"), start, end),
                  call);
  }

  /// Lifts a forced DOWN (see down()).
  void up(const std::string& uuid) const {
    detail::check(lively_client_up(handle(), detail::arg(uuid, "lively_client_up", "uuid")),
                  "lively_client_up");
  }

  /// Deletes a service (lively_client_delete(); `delete` is a C++
  /// keyword); false if there was none.
  bool remove(const std::string& uuid) const {
    bool deleted = false;
    detail::check(
        lively_client_delete(handle(), detail::arg(uuid, "lively_client_delete", "uuid"), &deleted),
        "lively_client_delete");
    return deleted;
  }

  /// The client's counters (keepalives, reconnects, lease, ...).
  [[nodiscard]] lively_stats stats() const {
    lively_stats s = LIVELY_STATS_INIT;
    detail::check(lively_client_stats(handle(), &s), "lively_client_stats");
    return s;
  }

  /// Calls `callback(const lively::Event&)` for each change of the
  /// matching services, on a library thread, one call at a time; with
  /// `snapshot`, first an EXISTING event for each matching service. An
  /// exception it throws is caught and reported (see
  /// set_callback_exception_handler()); delivery goes on.
  ///
  /// A callback taking `(const lively::Event&, lively::CurrentSubscription&)`
  /// can cancel its own subscription from its first call on (a snapshot
  /// event may arrive before this function returns).
  ///
  /// Keep the result: destroying the Subscription cancels it.
  template <typename F>
  [[nodiscard]] Subscription subscribe(const Filter& filter, F callback, bool snapshot = false,
                                       size_t queue_capacity = 0) const {
    static_assert(std::is_invocable_v<F&, const Event&, CurrentSubscription&> ||
                      std::is_invocable_v<F&, const Event&>,
                  "a subscribe callback takes (const lively::Event&) or "
                  "(const lively::Event&, lively::CurrentSubscription&)");
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
      F& f = *static_cast<F*>(userdata);
      if constexpr (std::is_invocable_v<F&, const Event&, CurrentSubscription&>) {
        CurrentSubscription self;
        f(Event::from(*event), self);
      } else {
        f(Event::from(*event));
      }
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

  /// As Client::is_up(), from the local copy.
  [[nodiscard]] bool is_up(const std::string& uuid) const {
    bool up = false;
    detail::check(lively_view_is_up(handle(), detail::arg(uuid, "lively_view_is_up", "uuid"), &up),
                  "lively_view_is_up");
    return up;
  }

  [[nodiscard]] bool is_up(const std::string& type, const std::string& host) const {
    const char* call = "lively_view_is_up_by_type_host";
    bool up = false;
    detail::check(lively_view_is_up_by_type_host(handle(), detail::arg(type, call, "service_type"),
                                                 detail::arg(host, call, "host"), &up),
                  call);
    return up;
  }

  /// As Client::get(): std::nullopt for an unknown uuid.
  [[nodiscard]] std::optional<Service> get(const std::string& uuid) const {
    lively_service_info* info = nullptr;
    lively_result rc =
        lively_view_get(handle(), detail::arg(uuid, "lively_view_get", "uuid"), &info);
    if (rc == LIVELY_RESULT_NOT_FOUND) return std::nullopt;
    detail::check(rc, "lively_view_get");
    Service s = Service::from(info->service, info->up);
    lively_service_info_free(info);
    return s;
  }

  [[nodiscard]] std::vector<Service> list(const Filter& filter = {}) const {
    lively_filter f = filter.c();
    lively_service_list* list = nullptr;
    detail::check(lively_view_list(handle(), &f, &list), "lively_view_list");
    return Client::take(list);
  }

  [[nodiscard]] bool is_connected() const noexcept { return lively_view_is_connected(handle()); }
  [[nodiscard]] int64_t revision() const noexcept { return lively_view_revision(handle()); }
  const lively_view* handle() const noexcept { return handle_.get(); }

 private:
  struct Free {
    void operator()(const lively_view* v) const noexcept { lively_view_free(v); }
  };
  std::unique_ptr<const lively_view, Free> handle_;
};

/// The library's version string, e.g. "0.1.0".
[[nodiscard]] inline std::string version() { return lively_version(); }

}  // namespace lively

#endif /* OS_LIVELY_HPP */
