/*
 * A C daemon with a heartbeat deadline, driven by tests/c_api.rs.
 *
 * One client, two services: "worker" with heartbeat_ms = 2000 and "plain"
 * without. Prints "uuids <worker> <plain>", then its main loop checks in
 * for the worker every 50 ms. stdin "stop" stops the loop (the process and
 * its lease live on), "resume" resumes it; each is answered "ok". On EOF
 * it closes the client and exits 0. Settings from OSLIVELY_* variables.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "os_lively.h"

#define CHECK(cond)                                                                      \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      fprintf(stderr, "heartbeat.c:%d: CHECK failed: %s (last error: %s)\n", __LINE__, \
              #cond, lively_last_error());                                               \
      exit(1);                                                                           \
    }                                                                                    \
  } while (0)

#define OK(call) CHECK((call) == LIVELY_RESULT_OK)

static atomic_bool running = true;
static atomic_bool quit = false;

static void *main_loop(void *arg) {
  const lively_client *client = ((const lively_client **)arg)[0];
  const char *uuid = ((const char **)arg)[1];
  struct timespec pause = {0, 50 * 1000 * 1000};
  while (!atomic_load(&quit)) {
    if (atomic_load(&running)) OK(lively_client_heartbeat(client, uuid));
    nanosleep(&pause, NULL);
  }
  return NULL;
}

int main(void) {
  lively_config *config = NULL;
  OK(lively_config_from_env(&config));
  const lively_client *client = NULL;
  OK(lively_client_connect(config, &client));
  lively_config_free(config);

  lively_service worker = LIVELY_SERVICE_INIT;
  worker.service_type = "worker";
  worker.host = "c-child";
  worker.status = LIVELY_STATUS_UP;
  worker.heartbeat_ms = 2000;
  char worker_uuid[LIVELY_UUID_BUF_LEN];
  OK(lively_client_update(client, &worker, worker_uuid, sizeof worker_uuid));

  lively_service plain = LIVELY_SERVICE_INIT;
  plain.service_type = "plain";
  plain.host = "c-child";
  plain.status = LIVELY_STATUS_UP;
  char plain_uuid[LIVELY_UUID_BUF_LEN];
  OK(lively_client_update(client, &plain, plain_uuid, sizeof plain_uuid));

  /* A service without a deadline has nothing to check in for. */
  CHECK(lively_client_heartbeat(client, plain_uuid) == LIVELY_RESULT_NOT_FOUND);
  CHECK(lively_client_heartbeat(client, NULL) == LIVELY_RESULT_NULL_PARAMETER);
  CHECK(lively_client_heartbeat(client, "not-a-uuid") == LIVELY_RESULT_INVALID_ARGUMENT);
  /* The record read back states its deadline. */
  lively_service_info *info = NULL;
  OK(lively_client_get(client, worker_uuid, &info));
  CHECK(info != NULL && info->service.heartbeat_ms == 2000 && !info->service.heartbeat_missed);
  lively_service_info_free(info);

  const void *args[2] = {client, worker_uuid};
  pthread_t loop;
  CHECK(pthread_create(&loop, NULL, main_loop, (void *)args) == 0);

  printf("uuids %s %s\n", worker_uuid, plain_uuid);
  fflush(stdout);
  char line[64];
  while (fgets(line, sizeof line, stdin) != NULL) {
    if (strncmp(line, "stop", 4) == 0) atomic_store(&running, false);
    if (strncmp(line, "resume", 6) == 0) atomic_store(&running, true);
    printf("ok\n");
    fflush(stdout);
  }
  atomic_store(&quit, true);
  pthread_join(loop, NULL);

  lively_stats stats = LIVELY_STATS_INIT;
  OK(lively_client_stats(client, &stats));
  fprintf(stderr, "heartbeat.c: %llu missed deadline(s)\n",
          (unsigned long long)stats.heartbeats_missed);
  CHECK(stats.heartbeats_missed >= 1);
  OK(lively_client_close(client));
  lively_client_free(client);
  return 0;
}
