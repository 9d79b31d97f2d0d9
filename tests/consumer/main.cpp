// The C++ header from an installed os-lively (CMake consumer).
#include <cstdio>

#include <os_lively.hpp>

int main() {
  try {
    lively::Client client(lively::Config::from_env());
    std::string uuid = client.update(lively::Service("consumer-cxx", "host-1"));
    if (!client.is_up(uuid)) return 1;
    client.close();
    std::printf("consumer-cxx ok %s\n", lively::version().c_str());
  } catch (const lively::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
