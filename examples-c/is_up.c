/*
 * lively-is-up: asks whether a service is UP.
 *
 *   lively-is-up UUID
 *   lively-is-up TYPE HOST
 *
 * Prints "up" or "down"; exits 0 when UP, 1 when DOWN (or unknown), 2 on
 * error. Settings come from the OSLIVELY_* environment variables.
 */
#include <stdbool.h>
#include <stdio.h>

#include "os_lively.h"

int main(int argc, char **argv) {
  if (argc != 2 && argc != 3) {
    fprintf(stderr, "usage: %s UUID | %s TYPE HOST\n", argv[0], argv[0]);
    return 2;
  }
  lively_config *config = NULL;
  lively_result rc = lively_config_from_env(&config);
  const lively_client *client = NULL;
  if (rc == LIVELY_RESULT_OK) {
    rc = lively_client_connect(config, &client);
    lively_config_free(config);
  }
  bool up = false;
  if (rc == LIVELY_RESULT_OK) {
    rc = argc == 2 ? lively_client_is_up(client, argv[1], &up)
                   : lively_client_is_up_by_type_host(client, argv[1], argv[2], &up);
  }
  if (rc) {
    fprintf(stderr, "lively-is-up: %s (%s)\n", lively_result_str(rc), lively_last_error());
    lively_client_free(client);
    return 2;
  }
  /* A query-only client registered nothing: freeing it is all it takes. */
  lively_client_free(client);
  puts(up ? "up" : "down");
  return up ? 0 : 1;
}
