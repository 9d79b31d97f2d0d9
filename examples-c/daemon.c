/*
 * lively-daemon: a daemon that registers itself and stays UP while it runs.
 *
 *   lively-daemon TYPE HOST [UUID]
 *
 * Settings come from the OSLIVELY_* environment variables (see
 * lively_config_from_env()). Prints "uuid <uuid>" once registered; on
 * SIGINT/SIGTERM it closes the client, which takes the service DOWN at
 * once. Killed with SIGKILL, the service goes DOWN about one status TTL
 * later, when its lease expires.
 */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "os_lively.h"

static void log_to_stderr(void *userdata, lively_log_level level, const char *message) {
  (void)userdata;
  fprintf(stderr, "lively-daemon: [%u] %s\n", (unsigned)level, message);
}

static int fail(const char *what, lively_result rc) {
  fprintf(stderr, "lively-daemon: %s: %s (%s)\n", what, lively_result_str(rc), lively_last_error());
  return 2;
}

int main(int argc, char **argv) {
  if (argc < 3 || argc > 4) {
    fprintf(stderr, "usage: %s TYPE HOST [UUID]\n", argv[0]);
    return 2;
  }
  /* Block the stop signals before any library thread starts, so only
   * sigwait() below sees them. */
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, NULL);

  lively_result rc = lively_set_log_callback(log_to_stderr, NULL, LIVELY_LOG_LEVEL_WARN);
  if (rc) return fail("log callback", rc);

  lively_config *config = NULL;
  rc = lively_config_from_env(&config);
  if (rc) return fail("configuration", rc);
  const lively_client *client = NULL;
  rc = lively_client_connect(config, &client);
  lively_config_free(config);
  if (rc) return fail("connect", rc);

  lively_service service = LIVELY_SERVICE_INIT;
  service.uuid = argc == 4 ? argv[3] : NULL;
  service.service_type = argv[1];
  service.host = argv[2];
  service.status = LIVELY_STATUS_UP;
  char uuid[LIVELY_UUID_BUF_LEN];
  rc = lively_client_update(client, &service, uuid, sizeof uuid);
  if (rc) {
    lively_client_free(client);
    return fail("register", rc);
  }
  printf("uuid %s\n", uuid);
  fflush(stdout);

  int sig = 0;
  sigwait(&stop, &sig);

  lively_stats stats = LIVELY_STATS_INIT;
  if (lively_client_stats(client, &stats) == LIVELY_RESULT_OK) {
    fprintf(stderr, "lively-daemon: stopping on signal %d after %llu keepalives\n", sig,
            (unsigned long long)stats.keepalives_sent);
  }
  rc = lively_client_close(client);
  lively_client_free(client);
  if (rc) return fail("close", rc);
  return 0;
}
