/* A consumer of an installed os-lively: built by tests/c_install.rs once
 * with CMake (find_package) and once with pkg-config against a
 * `cargo cinstall` prefix. Registers a service, checks it is UP, closes.
 * Settings from OSLIVELY_*; prints "consumer ok <version>". */
#include <stdio.h>
#include <string.h>

#include <os_lively.h>

#define OK(call)                                                  \
  do {                                                            \
    if ((call) != LIVELY_RESULT_OK) {                             \
      fprintf(stderr, "%s: %s\n", #call, lively_last_error());    \
      return 1;                                                   \
    }                                                             \
  } while (0)

int main(void) {
  lively_config *config = NULL;
  OK(lively_config_from_env(&config));
  const lively_client *client = NULL;
  OK(lively_client_connect(config, &client));
  lively_config_free(config);
  lively_service s = LIVELY_SERVICE_INIT;
  s.service_type = "consumer";
  s.host = "host-1";
  char uuid[LIVELY_UUID_BUF_LEN];
  OK(lively_client_update(client, &s, uuid, sizeof uuid));
  bool up = false;
  OK(lively_client_is_up(client, uuid, &up));
  if (!up) {
    fprintf(stderr, "not up\n");
    return 1;
  }
  OK(lively_client_close(client));
  lively_client_free(client);
  printf("consumer ok %s\n", lively_version());
  return 0;
}
