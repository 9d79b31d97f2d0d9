// lively-watch-cxx: os_lively.hpp, the C++ API.
//
//   lively-watch-cxx [TYPE]
//
// Prints one line per event, like lively-watch: "<KIND> <uuid> <type>
// <host> <reason> <revision>". Stops on SIGINT or SIGTERM. Settings come
// from the OSLIVELY_* environment variables.
#include <signal.h>

#include <cctype>
#include <cstdio>
#include <string>

#include "os_lively.hpp"

// The reason as lively-watch prints it: lower case, "-" for none.
static std::string reason_text(lively::DownReason reason) {
  if (reason == lively::DownReason::None) return "-";
  std::string text = lively::name(reason);
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
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
          std::printf("%s %s %s %s %s %lld\n", lively::name(e.kind), e.uuid.c_str(),
                      e.service_type.c_str(), e.host.c_str(), reason_text(e.reason).c_str(),
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
