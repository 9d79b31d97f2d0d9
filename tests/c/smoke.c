/*
 * C smoke test of the os-lively C API against a real etcd (settings from
 * the OSLIVELY_* environment variables, given by tests/c_api.rs). Also run
 * under valgrind. Exits 0 when every check passed.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "os_lively.h"

#define CHECK(cond)                                                                  \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      fprintf(stderr, "smoke.c:%d: CHECK failed: %s (last error: %s)\n", __LINE__, \
              #cond, lively_last_error());                                           \
      exit(1);                                                                       \
    }                                                                                \
  } while (0)

#define OK(call) CHECK((call) == LIVELY_RESULT_OK)

/* ---- shared state for callbacks, guarded by one mutex ---- */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static void wait_for(const bool *flag, int seconds) {
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += seconds;
  pthread_mutex_lock(&mu);
  while (!*flag) {
    if (pthread_cond_timedwait(&cv, &mu, &deadline) == ETIMEDOUT) break;
  }
  bool ok = *flag;
  pthread_mutex_unlock(&mu);
  CHECK(ok);
}

static void set_flag(bool *flag) {
  pthread_mutex_lock(&mu);
  *flag = true;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
}

/* ---- the main watcher ---- */

struct watcher {
  const lively_client *client;
  char uuid_a[LIVELY_UUID_BUF_LEN];
  char uuid_b[LIVELY_UUID_BUF_LEN];
  int existing;
  bool saw_snapshot;
  bool saw_down_forced;
  bool saw_removed;
  bool released;
  lively_result reentrant_rc;
  bool reentrant_up;
  bool reentrant_done;
};

static void on_event(void *userdata, const lively_event *e) {
  struct watcher *w = userdata;
  /* Calling back into the library from a callback works. */
  bool call_back = false;
  pthread_mutex_lock(&mu);
  call_back = !w->reentrant_done && e->kind == LIVELY_EVENT_KIND_EXISTING &&
              strcmp(e->uuid, w->uuid_a) == 0;
  pthread_mutex_unlock(&mu);
  bool up = false;
  lively_result rc = LIVELY_RESULT_OK;
  if (call_back) rc = lively_client_is_up(w->client, e->uuid, &up);

  pthread_mutex_lock(&mu);
  if (call_back) {
    w->reentrant_rc = rc;
    w->reentrant_up = up;
    w->reentrant_done = true;
  }
  if (e->kind == LIVELY_EVENT_KIND_EXISTING) {
    CHECK(e->service != NULL);
    CHECK(strcmp(e->service->uuid, e->uuid) == 0);
    CHECK(e->new_status == LIVELY_STATUS_UP);
    if (++w->existing == 2) w->saw_snapshot = true;
  }
  if (e->kind == LIVELY_EVENT_KIND_DOWN && e->reason == LIVELY_DOWN_REASON_FORCED &&
      strcmp(e->uuid, w->uuid_a) == 0) {
    CHECK(e->old_status == LIVELY_STATUS_UP);
    CHECK(e->new_status == LIVELY_STATUS_DOWN);
    CHECK(strcmp(e->service->maintenance_note, "maint") == 0);
    w->saw_down_forced = true;
  }
  if (e->kind == LIVELY_EVENT_KIND_REMOVED && strcmp(e->uuid, w->uuid_b) == 0) {
    CHECK(e->new_status == LIVELY_STATUS_NONE);
    w->saw_removed = true;
  }
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
}

static void on_release(void *userdata) {
  struct watcher *w = userdata;
  set_flag(&w->released);
}

/* ---- subscriptions that cancel or free themselves from their callback ---- */

enum self_end { END_CANCEL, END_FREE, END_CANCEL_CURRENT };

struct self_ender {
  lively_subscription *sub; /* set by main after subscribe returns */
  bool sub_set;
  enum self_end how;
  int calls;
  bool called;
  bool released;
};

static void self_end_event(void *userdata, const lively_event *e) {
  struct self_ender *s = userdata;
  (void)e;
  if (s->how == END_CANCEL_CURRENT) {
    /* Needs no handle: works on the first snapshot event, whether or not
     * lively_client_subscribe() has returned in the main thread yet. */
    pthread_mutex_lock(&mu);
    s->calls++;
    pthread_mutex_unlock(&mu);
    OK(lively_subscription_cancel_current());
    OK(lively_subscription_cancel_current()); /* twice is fine */
    set_flag(&s->called);
    return;
  }
  wait_for(&s->sub_set, 10);
  pthread_mutex_lock(&mu);
  s->calls++;
  lively_subscription *sub = s->sub;
  s->sub = NULL;
  pthread_mutex_unlock(&mu);
  if (sub) {
    if (s->how == END_FREE) {
      lively_subscription_free(sub);
    } else {
      OK(lively_subscription_cancel(sub));
      OK(lively_subscription_cancel(sub)); /* twice is fine */
    }
  }
  set_flag(&s->called);
}

static void self_end_release(void *userdata) {
  struct self_ender *s = userdata;
  set_flag(&s->released);
}

static void self_ending(const lively_client *client, enum self_end how) {
  struct self_ender s = {0};
  s.how = how;
  lively_subscribe_options opts = LIVELY_SUBSCRIBE_OPTIONS_INIT;
  opts.snapshot = true; /* two EXISTING events queued at once */
  lively_subscription *sub = NULL;
  OK(lively_client_subscribe(client, NULL, &opts, self_end_event, &s, self_end_release, &sub));
  pthread_mutex_lock(&mu);
  s.sub = sub;
  s.sub_set = true;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
  wait_for(&s.called, 10);
  wait_for(&s.released, 10);
  struct timespec pause = {0, 200 * 1000 * 1000};
  nanosleep(&pause, NULL);
  pthread_mutex_lock(&mu);
  CHECK(s.calls == 1); /* no callback started after cancel/free */
  pthread_mutex_unlock(&mu);
  if (how != END_FREE) lively_subscription_free(sub);
}

/* ---- a subscriber that counts ---- */

struct counter {
  bool called;
  bool released;
};

static void count_event(void *userdata, const lively_event *e) {
  struct counter *c = userdata;
  (void)e;
  set_flag(&c->called);
}

static void count_release(void *userdata) {
  struct counter *c = userdata;
  set_flag(&c->released);
}

/* ---- a slow subscriber ---- */

struct slow {
  bool started;
  bool released;
};

static void slow_event(void *userdata, const lively_event *e) {
  struct slow *s = userdata;
  (void)e;
  set_flag(&s->started);
  struct timespec pause = {0, 50 * 1000 * 1000};
  nanosleep(&pause, NULL);
}

static void slow_release(void *userdata) {
  struct slow *s = userdata;
  set_flag(&s->released);
}

/* ---- logging ---- */

static int log_messages;
static void on_log(void *userdata, lively_log_level level, const char *message) {
  (void)userdata;
  if (getenv("SMOKE_LOG")) fprintf(stderr, "smoke log: %s\n", message);
  CHECK(level >= LIVELY_LOG_LEVEL_ERROR && level <= LIVELY_LOG_LEVEL_TRACE);
  pthread_mutex_lock(&mu);
  log_messages++;
  pthread_mutex_unlock(&mu);
}

static const lively_client *connect_from_env(void) {
  lively_config *config = NULL;
  OK(lively_config_from_env(&config));
  OK(lively_config_set_request_timeout_ms(config, 5000));
  OK(lively_config_set_call_polling_us(config, 0));
  const lively_client *client = NULL;
  OK(lively_client_connect(config, &client));
  lively_config_free(config);
  return client;
}

int main(void) {
  /* Version: the header's combined number matches the loaded library. */
  CHECK(LIVELY_VERSION_NUMBER ==
        ((LIVELY_VERSION_MAJOR << 16) | (LIVELY_VERSION_MINOR << 8) | LIVELY_VERSION_PATCH));
  CHECK(lively_version_number() == LIVELY_VERSION_NUMBER);
  char version[32];
  snprintf(version, sizeof version, "%d.%d.%d", LIVELY_VERSION_MAJOR, LIVELY_VERSION_MINOR,
           LIVELY_VERSION_PATCH);
  CHECK(strcmp(lively_version(), version) == 0);

  OK(lively_set_log_callback(on_log, NULL, LIVELY_LOG_LEVEL_INFO));

  const lively_client *client = connect_from_env();
  struct watcher w = {0};
  w.client = client;

  /* Register from the plain struct. */
  lively_service a = LIVELY_SERVICE_INIT;
  a.service_type = "smoke-a";
  a.host = "host-1";
  a.region = "r1";
  a.status = LIVELY_STATUS_UP;
  OK(lively_client_update(client, &a, w.uuid_a, sizeof w.uuid_a));
  CHECK(strlen(w.uuid_a) == 32);
  /* Same record again: unchanged, same uuid, still UP. */
  char again[LIVELY_UUID_BUF_LEN];
  a.uuid = w.uuid_a;
  OK(lively_client_update(client, &a, again, sizeof again));
  CHECK(strcmp(again, w.uuid_a) == 0);

  /* Register from protobuf bytes: type "bytes", host "h2" (status UP = 0). */
  const uint8_t pb[] = {0x12, 5, 'b', 'y', 't', 'e', 's', 0x1a, 2, 'h', '2'};
  OK(lively_client_update_bytes(client, pb, sizeof pb, w.uuid_b, sizeof w.uuid_b));

  bool up = false;
  OK(lively_client_is_up(client, w.uuid_a, &up));
  CHECK(up);
  up = false;
  OK(lively_client_is_up_by_type_host(client, "bytes", "h2", &up));
  CHECK(up);
  OK(lively_client_is_up(client, "00000000000000000000000000000000", &up));
  CHECK(!up);

  lively_service_info *info = NULL;
  OK(lively_client_get(client, w.uuid_a, &info));
  CHECK(info->up);
  CHECK(strcmp(info->service.uuid, w.uuid_a) == 0);
  CHECK(strcmp(info->service.service_type, "smoke-a") == 0);
  CHECK(strcmp(info->service.region, "r1") == 0);
  CHECK(strcmp(info->service.maintenance_note, "") == 0);
  CHECK(info->service.status == LIVELY_STATUS_UP);
  lively_service_info_free(info);
  info = NULL;
  OK(lively_client_get_by_type_host(client, "bytes", "h2", &info));
  CHECK(strcmp(info->service.uuid, w.uuid_b) == 0);
  lively_service_info_free(info);
  info = NULL;
  CHECK(lively_client_get(client, "00000000000000000000000000000000", &info) ==
        LIVELY_RESULT_NOT_FOUND);
  CHECK(info == NULL);

  lively_service_list *list = NULL;
  OK(lively_client_list(client, NULL, &list));
  CHECK(list->len == 2);
  lively_service_list_free(list);
  lively_filter by_type = LIVELY_FILTER_INIT;
  by_type.service_type = "smoke-a";
  OK(lively_client_list(client, &by_type, &list));
  CHECK(list->len == 1 && list->items[0].up);
  CHECK(strcmp(list->items[0].service.host, "host-1") == 0);
  lively_service_list_free(list);

  /* Local view: answers without a round trip, reads its own writes. */
  const lively_view *view = NULL;
  OK(lively_view_new(client, 0, &view));
  OK(lively_view_sync(view, 5000));
  CHECK(lively_view_is_connected(view));
  CHECK(lively_view_revision(view) > 0);
  up = false;
  OK(lively_view_is_up(view, w.uuid_a, &up));
  CHECK(up);
  up = false;
  OK(lively_view_is_up_by_type_host(view, "bytes", "h2", &up));
  CHECK(up);
  OK(lively_view_get(view, w.uuid_b, &info));
  CHECK(strcmp(info->service.host, "h2") == 0);
  lively_service_info_free(info);
  info = NULL;
  OK(lively_view_list(view, &by_type, &list));
  CHECK(list->len == 1);
  lively_service_list_free(list);
  CHECK(lively_view_is_up(view, "not-a-uuid", &up) == LIVELY_RESULT_INVALID_ARGUMENT);
  lively_view_free(view);
  lively_view_free(NULL);

  lively_stats stats = LIVELY_STATS_INIT;
  OK(lively_client_stats(client, &stats));
  CHECK(stats.lease_id != 0);
  CHECK(stats.lease_granted_ttl > 0);

  /* Callback subscription with a snapshot. */
  lively_subscribe_options opts = LIVELY_SUBSCRIBE_OPTIONS_INIT;
  opts.snapshot = true;
  lively_subscription *sub = NULL;
  OK(lively_client_subscribe(client, NULL, &opts, on_event, &w, on_release, &sub));
  wait_for(&w.saw_snapshot, 10);
  wait_for(&w.reentrant_done, 10);
  CHECK(w.reentrant_rc == LIVELY_RESULT_OK && w.reentrant_up);

  /* Pull subscription. */
  lively_subscription *pull = NULL;
  OK(lively_client_subscribe_pull(client, &by_type, &opts, &pull));
  lively_event *ev = NULL;
  OK(lively_subscription_next(pull, 5000, &ev));
  CHECK(ev != NULL && ev->kind == LIVELY_EVENT_KIND_EXISTING);
  CHECK(strcmp(ev->uuid, w.uuid_a) == 0 && strcmp(ev->service->host, "host-1") == 0);
  lively_event_free(ev);
  ev = NULL;
  OK(lively_subscription_next(pull, 10, &ev));
  CHECK(ev == NULL);
  /* A callback subscription has no queue to pull from. */
  CHECK(lively_subscription_next(sub, 10, &ev) == LIVELY_RESULT_INVALID_ARGUMENT);

  /* Forced down, then delete: the watcher sees both. */
  OK(lively_client_down(client, w.uuid_a, "maint", 1, 4000000000u));
  wait_for(&w.saw_down_forced, 10);
  OK(lively_subscription_next(pull, 5000, &ev));
  CHECK(ev != NULL && ev->kind == LIVELY_EVENT_KIND_DOWN &&
        ev->reason == LIVELY_DOWN_REASON_FORCED);
  lively_event_free(ev);
  OK(lively_subscription_cancel(pull));
  CHECK(lively_subscription_next(pull, 10, &ev) == LIVELY_RESULT_CLOSED);
  lively_subscription_free(pull);

  OK(lively_client_get(client, w.uuid_a, &info));
  CHECK(!info->up && info->service.status == LIVELY_STATUS_DOWN);
  CHECK(strcmp(info->service.maintenance_note, "maint") == 0);
  CHECK(info->service.maintenance_start == 1 && info->service.maintenance_end == 4000000000u);
  CHECK(info->service.forced_down);
  lively_service_info_free(info);
  lively_filter down_only = LIVELY_FILTER_INIT;
  down_only.has_status = true;
  down_only.status = LIVELY_STATUS_DOWN;
  OK(lively_client_list(client, &down_only, &list));
  CHECK(list->len == 1);
  lively_service_list_free(list);
  /* Sticky: A's own updates would keep it DOWN; lift it. */
  OK(lively_client_up(client, w.uuid_a));
  OK(lively_client_is_up(client, w.uuid_a, &up));
  CHECK(up);
  CHECK(lively_client_up(NULL, w.uuid_a) == LIVELY_RESULT_NULL_PARAMETER);

  bool deleted = false;
  OK(lively_client_delete(client, w.uuid_b, &deleted));
  CHECK(deleted);
  wait_for(&w.saw_removed, 10);
  OK(lively_client_delete(client, w.uuid_b, &deleted));
  CHECK(!deleted);
  OK(lively_client_delete(client, w.uuid_b, NULL));

  lively_subscription_free(sub);
  wait_for(&w.released, 10);

  /* Bring B back so snapshots have two services, then end subscriptions
   * from inside their own callbacks. */
  OK(lively_client_update_bytes(client, pb, sizeof pb, NULL, 0));
  self_ending(client, END_CANCEL);
  self_ending(client, END_FREE);
  self_ending(client, END_CANCEL_CURRENT);
  /* Outside a callback there is no current subscription: refused. */
  CHECK(lively_subscription_cancel_current() == LIVELY_RESULT_INVALID_ARGUMENT);
  CHECK(strstr(lively_last_error(), "lively_subscription_cancel_current") != NULL);

  /* Every handle keeps the connection alive: after its client handle is
   * freed, a subscription still gets events; freeing it, the last handle,
   * ends the connection and runs its release. */
  {
    const lively_client *other = connect_from_env();
    struct counter c = {0};
    lively_subscription *orphan = NULL;
    OK(lively_client_subscribe(other, NULL, NULL, count_event, &c, count_release, &orphan));
    lively_client_free(other);
    a.uuid = w.uuid_a;
    a.maintenance_note = "after free";
    OK(lively_client_update(client, &a, NULL, 0));
    wait_for(&c.called, 10);
    pthread_mutex_lock(&mu);
    CHECK(!c.released);
    pthread_mutex_unlock(&mu);
    lively_subscription_free(orphan);
    pthread_mutex_lock(&mu);
    CHECK(c.released); /* ran before free returned: no callback is running */
    pthread_mutex_unlock(&mu);
  }

  /* Close the client while a slow subscriber still has events queued: the
   * subscription ends, its release runs, and freeing it afterwards is fine.
   * Close ends every handle: a view and a pull subscription say CLOSED. */
  {
    const lively_view *closing_view = NULL;
    OK(lively_view_new(client, 0, &closing_view));
    lively_subscription *closing_pull = NULL;
    OK(lively_client_subscribe_pull(client, NULL, NULL, &closing_pull));
    struct slow slow = {0};
    lively_subscribe_options snap = LIVELY_SUBSCRIBE_OPTIONS_INIT;
    snap.snapshot = true;
    lively_subscription *busy = NULL;
    OK(lively_client_subscribe(client, NULL, &snap, slow_event, &slow, slow_release, &busy));
    a.uuid = w.uuid_a;
    a.status = LIVELY_STATUS_UP;
    for (int i = 0; i < 5; i++) {
      char note[16];
      snprintf(note, sizeof note, "n%d", i);
      a.maintenance_note = note;
      OK(lively_client_update(client, &a, NULL, 0));
    }
    wait_for(&slow.started, 10);
    OK(lively_client_close(client));
    wait_for(&slow.released, 10);
    lively_subscription_free(busy);
    CHECK(lively_view_is_up(closing_view, w.uuid_a, &up) == LIVELY_RESULT_CLOSED);
    lively_event *ev = NULL;
    lively_result rc;
    /* Events queued before the close may still be read; then CLOSED. */
    while ((rc = lively_subscription_next(closing_pull, 0, &ev)) == LIVELY_RESULT_OK && ev)
      lively_event_free(ev);
    CHECK(rc == LIVELY_RESULT_CLOSED);
    lively_subscription_free(closing_pull);
    lively_view_free(closing_view);
  }

  OK(lively_client_close(client));
  OK(lively_client_close(client));
  CHECK(lively_client_is_up(client, w.uuid_a, &up) == LIVELY_RESULT_CLOSED);
  CHECK(strlen(lively_last_error()) > 0);
  lively_client_free(client);
  OK(lively_set_log_callback(NULL, NULL, 0));
  printf("smoke: ok (%d log messages)\n", log_messages);
  return 0;
}
