// lively-watch-cxx: os_lively.hpp, the C++ API.
//
//   lively-watch-cxx [TYPE]
//
// Prints one line per event, like lively-watch: "<KIND> <uuid> <type>
// <host> <reason> <revision>". Stops on SIGINT or SIGTERM. Settings come
// from the OSLIVELY_* environment variables.
#include <signal.h>

#include <cstdio>
#include <string>

#include "os_lively.hpp"

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
  // Signals are taken by sigwait() below, not by a handler on some thread.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  try {
    lively::Client client(lively::Config::from_env());
    lively::Filter filter;
    if (argc > 1) filter.service_type = argv[1];
    unsigned long count = 0;
    auto sub = client.subscribe(
        filter,
        [&count](const lively::Event& e) {
          ++count;  // one call at a time per subscription: no lock needed
          std::printf("%s %s %s %s %s %lld\n", kind_name(e.kind), e.uuid.c_str(),
                      e.service_type.c_str(), e.host.c_str(), reason_name(e.reason),
                      static_cast<long long>(e.revision));
          std::fflush(stdout);
        },
        /*snapshot=*/true);
    std::fprintf(stderr, "lively-watch-cxx: watching\n");
    int sig = 0;
    sigwait(&stop, &sig);
    sub.reset();  // no callback starts after this: `count` is ours again
    std::fprintf(stderr, "lively-watch-cxx: %lu events\n", count);
  } catch (const lively::Error& e) {
    std::fprintf(stderr, "lively-watch-cxx: %s\n", e.what());
    return 2;
  }
  return 0;
}
