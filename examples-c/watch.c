/*
 * lively-watch: prints every change of the services in the namespace.
 *
 *   lively-watch [TYPE]
 *
 * One line per event: "<KIND> <uuid> <type> <host> <reason> <revision>".
 * Starts with an EXISTING line per service (snapshot). Stops on SIGINT or
 * SIGTERM. Settings come from the OSLIVELY_* environment variables.
 */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "os_lively.h"

static const char *kind_name(lively_event_kind kind) {
  switch (kind) {
    case LIVELY_EVENT_KIND_EXISTING: return "EXISTING";
    case LIVELY_EVENT_KIND_REGISTERED: return "REGISTERED";
    case LIVELY_EVENT_KIND_UP: return "UP";
    case LIVELY_EVENT_KIND_DOWN: return "DOWN";
    case LIVELY_EVENT_KIND_UPDATED: return "UPDATED";
    case LIVELY_EVENT_KIND_REMOVED: return "REMOVED";
    case LIVELY_EVENT_KIND_RESYNC: return "RESYNC";
    default: return "?";
  }
}

static const char *reason_name(lively_down_reason reason) {
  switch (reason) {
    case LIVELY_DOWN_REASON_FORCED: return "forced";
    case LIVELY_DOWN_REASON_EXPIRED: return "expired";
    case LIVELY_DOWN_REASON_DELETED: return "deleted";
    case LIVELY_DOWN_REASON_MISSED: return "missed";
    case LIVELY_DOWN_REASON_MOVED: return "moved";
    case LIVELY_DOWN_REASON_LIFTED: return "lifted";
    case LIVELY_DOWN_REASON_CLOSED: return "closed";
    case LIVELY_DOWN_REASON_DECLARED: return "declared";
    default: return "-";
  }
}

struct printer {
  FILE *out;
  unsigned long events;
};

/* Runs on a library thread, one event at a time. */
static void on_event(void *userdata, const lively_event *event) {
  struct printer *p = userdata;
  p->events++;
  fprintf(p->out, "%s %s %s %s %s %lld\n", kind_name(event->kind), event->uuid,
          event->service_type, event->host, reason_name(event->reason),
          (long long)event->revision);
  fflush(p->out);
}

/* Runs once, after the last on_event. */
static void on_release(void *userdata) {
  struct printer *p = userdata;
  fprintf(stderr, "lively-watch: %lu events\n", p->events);
  free(p);
}

static int fail(const char *what, lively_result rc) {
  fprintf(stderr, "lively-watch: %s: %s (%s)\n", what, lively_result_str(rc), lively_last_error());
  return 2;
}

int main(int argc, char **argv) {
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, NULL);

  lively_config *config = NULL;
  lively_result rc = lively_config_from_env(&config);
  if (rc) return fail("configuration", rc);
  const lively_client *client = NULL;
  rc = lively_client_connect(config, &client);
  lively_config_free(config);
  if (rc) return fail("connect", rc);

  lively_filter filter = LIVELY_FILTER_INIT;
  filter.service_type = argc > 1 ? argv[1] : NULL;
  lively_subscribe_options options = LIVELY_SUBSCRIBE_OPTIONS_INIT;
  options.snapshot = true;
  struct printer *p = calloc(1, sizeof *p);
  if (!p) return 2;
  p->out = stdout;
  lively_subscription *sub = NULL;
  rc = lively_client_subscribe(client, &filter, &options, on_event, p, on_release, &sub);
  if (rc) {
    free(p); /* not taken on failure */
    lively_client_free(client);
    return fail("subscribe", rc);
  }
  fprintf(stderr, "lively-watch: watching\n");

  int sig = 0;
  sigwait(&stop, &sig);
  lively_subscription_free(sub); /* no callback starts after this returns */
  lively_client_free(client);
  return 0;
}
