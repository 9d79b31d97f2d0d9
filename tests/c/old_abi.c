/*
 * A program built against the ABI before structs carried their size
 * (symbol version LIVELY_0): the struct definitions and prototypes below
 * are copied from that os_lively.h (commit 1943a3b), not included from
 * today's header. tests/c_api.rs links it against a stub library with the
 * same soname and unversioned symbols, exactly as it was linked then, and
 * runs it against today's libos_lively.so.0.
 *
 * It registers a service with a heartbeat deadline and `exclusive` at
 * their old offsets, reads it back, lists with an old filter (also through
 * a view), subscribes (pull and callback) with old options, and reads the
 * old lively_stats, checking the bytes after it stay untouched.
 * Settings from OSLIVELY_* variables. Exit 0 on success.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef uint32_t lively_result;
typedef struct lively_client lively_client;
typedef struct lively_config lively_config;
typedef struct lively_subscription lively_subscription;
typedef struct lively_view lively_view;

typedef struct lively_service {
  const char *uuid;
  const char *service_type;
  const char *host;
  uint32_t status;
  const char *region;
  uint64_t maintenance_start;
  uint64_t maintenance_end;
  const char *maintenance_note;
  uint64_t heartbeat_ms;
  bool heartbeat_missed;
  bool forced_down;
  bool exclusive;
} lively_service;

typedef struct lively_service_info {
  lively_service service;
  bool up;
} lively_service_info;

typedef struct lively_service_list {
  lively_service_info *items;
  size_t len;
} lively_service_list;

typedef struct lively_filter {
  const char *uuid;
  const char *service_type;
  const char *host;
  const char *region;
  bool has_status;
  uint32_t status;
} lively_filter;

typedef struct lively_subscribe_options {
  bool snapshot;
  size_t queue_capacity;
} lively_subscribe_options;

typedef struct lively_stats {
  uint64_t keepalives_sent;
  uint64_t keepalives_failed;
  uint64_t reconnects;
  uint64_t lease_regrants;
  uint64_t up_keys_restored;
  uint64_t events_delivered;
  uint64_t resyncs;
  uint64_t heartbeats_missed;
  int64_t lease_id;
  int64_t lease_granted_ttl;
  int64_t lease_ttl_remaining;
  uint64_t log_lines_dropped;
  uint64_t registrations_lost;
} lively_stats;

typedef struct lively_event {
  uint32_t kind;
  uint32_t reason;
  const char *uuid;
  const char *service_type;
  const char *host;
  const char *region;
  int32_t old_status;
  int32_t new_status;
  const lively_service *service;
  int64_t revision;
} lively_event;

typedef void (*lively_event_callback)(void *userdata, const lively_event *event);
typedef void (*lively_release_callback)(void *userdata);

#define LIVELY_RESULT_OK 0
#define LIVELY_RESULT_CONFLICT 3
#define LIVELY_EVENT_KIND_EXISTING 0
#define LIVELY_UUID_BUF_LEN 33

lively_result lively_config_from_env(lively_config **out);
void lively_config_free(lively_config *config);
lively_result lively_client_connect(const lively_config *config, const lively_client **out);
lively_result lively_client_close(const lively_client *client);
void lively_client_free(const lively_client *client);
lively_result lively_client_update(const lively_client *client, const lively_service *service,
                                   char *uuid_out, size_t uuid_out_len);
lively_result lively_client_get(const lively_client *client, const char *uuid,
                                lively_service_info **out);
void lively_service_info_free(lively_service_info *info);
lively_result lively_client_list(const lively_client *client, const lively_filter *filter,
                                 lively_service_list **out);
void lively_service_list_free(lively_service_list *list);
lively_result lively_client_stats(const lively_client *client, lively_stats *out);
lively_result lively_client_subscribe(const lively_client *client, const lively_filter *filter,
                                      const lively_subscribe_options *opts,
                                      lively_event_callback callback, void *userdata,
                                      lively_release_callback release, lively_subscription **out);
lively_result lively_client_subscribe_pull(const lively_client *client,
                                           const lively_filter *filter,
                                           const lively_subscribe_options *opts,
                                           lively_subscription **out);
lively_result lively_subscription_next(const lively_subscription *subscription, uint64_t timeout_ms,
                                       lively_event **event);
void lively_event_free(lively_event *event);
void lively_subscription_free(lively_subscription *subscription);
lively_result lively_view_new(const lively_client *client, uint64_t stale_after_ms,
                              const lively_view **out);
lively_result lively_view_sync(const lively_view *view, uint64_t timeout_ms);
lively_result lively_view_list(const lively_view *view, const lively_filter *filter,
                               lively_service_list **out);
void lively_view_free(const lively_view *view);
const char *lively_last_error(void);

#define CHECK(cond)                                                                    \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      fprintf(stderr, "old_abi.c:%d: CHECK failed: %s (last error: %s)\n", __LINE__, \
              #cond, lively_last_error());                                             \
      exit(1);                                                                         \
    }                                                                                  \
  } while (0)
#define OK(call) CHECK((call) == LIVELY_RESULT_OK)

static int callback_existing = 0;

static void on_event(void *userdata, const lively_event *event) {
  (void)userdata;
  if (event->kind == LIVELY_EVENT_KIND_EXISTING && event->service != NULL &&
      strcmp(event->service->service_type, "old-abi") == 0)
    __atomic_add_fetch(&callback_existing, 1, __ATOMIC_SEQ_CST);
}

int main(void) {
  lively_config *config = NULL;
  OK(lively_config_from_env(&config));
  const lively_client *client = NULL;
  OK(lively_client_connect(config, &client));

  /* Register with every field set at its old offset. */
  lively_service s;
  memset(&s, 0, sizeof s);
  s.service_type = "old-abi";
  s.host = "old-host";
  s.region = "old-region";
  s.maintenance_note = "old note";
  s.heartbeat_ms = 60000;
  s.heartbeat_missed = true; /* ignored on input, as it always was */
  char uuid[LIVELY_UUID_BUF_LEN];
  OK(lively_client_update(client, &s, uuid, sizeof uuid));
  CHECK(strlen(uuid) == 32);

  lively_service_info *info = NULL;
  OK(lively_client_get(client, uuid, &info));
  CHECK(strcmp(info->service.service_type, "old-abi") == 0);
  CHECK(strcmp(info->service.region, "old-region") == 0);
  CHECK(strcmp(info->service.maintenance_note, "old note") == 0);
  CHECK(info->service.heartbeat_ms == 60000);
  CHECK(!info->service.heartbeat_missed && !info->service.forced_down);
  CHECK(info->up);
  lively_service_info_free(info);

  /* `exclusive` at its old offset: a second client may not take it over. */
  const lively_client *other = NULL;
  OK(lively_client_connect(config, &other));
  lively_config_free(config);
  lively_service again;
  memset(&again, 0, sizeof again);
  again.service_type = "old-abi";
  again.host = "old-host";
  again.exclusive = true;
  CHECK(lively_client_update(other, &again, NULL, 0) == LIVELY_RESULT_CONFLICT);
  lively_client_free(other);

  /* Old filters, through the client and a view. */
  lively_filter f;
  memset(&f, 0, sizeof f);
  f.service_type = "old-abi";
  lively_service_list *list = NULL;
  OK(lively_client_list(client, &f, &list));
  CHECK(list->len == 1 && strcmp(list->items[0].service.uuid, uuid) == 0);
  lively_service_list_free(list);
  f.service_type = "no-such-type";
  OK(lively_client_list(client, &f, &list));
  CHECK(list->len == 0);
  lively_service_list_free(list);
  f.service_type = "old-abi";
  const lively_view *view = NULL;
  OK(lively_view_new(client, 0, &view));
  OK(lively_view_sync(view, 10000));
  OK(lively_view_list(view, &f, &list));
  CHECK(list->len == 1 && list->items[0].up);
  lively_service_list_free(list);
  lively_view_free(view);

  /* Old options: a snapshot, pulled and by callback. */
  lively_subscribe_options o;
  memset(&o, 0, sizeof o);
  o.snapshot = true;
  lively_subscription *sub = NULL;
  OK(lively_client_subscribe_pull(client, &f, &o, &sub));
  lively_event *ev = NULL;
  OK(lively_subscription_next(sub, 10000, &ev));
  CHECK(ev != NULL && ev->kind == LIVELY_EVENT_KIND_EXISTING && strcmp(ev->uuid, uuid) == 0);
  CHECK(ev->service != NULL && ev->service->heartbeat_ms == 60000);
  lively_event_free(ev);
  lively_subscription_free(sub);
  OK(lively_client_subscribe(client, &f, &o, on_event, NULL, NULL, &sub));
  for (int i = 0; i < 200 && __atomic_load_n(&callback_existing, __ATOMIC_SEQ_CST) == 0; i++) {
    struct timespec pause = {0, 50 * 1000 * 1000};
    nanosleep(&pause, NULL);
  }
  CHECK(__atomic_load_n(&callback_existing, __ATOMIC_SEQ_CST) == 1);
  lively_subscription_free(sub);

  /* The old lively_stats, with a canary after it that must stay intact. */
  struct {
    lively_stats stats;
    unsigned char canary[64];
  } st;
  memset(&st, 0xAB, sizeof st);
  OK(lively_client_stats(client, &st.stats));
  CHECK(st.stats.lease_id != 0 && st.stats.lease_granted_ttl > 0);
  for (size_t i = 0; i < sizeof st.canary; i++) CHECK(st.canary[i] == 0xAB);

  OK(lively_client_close(client));
  lively_client_free(client);
  puts("old-abi ok");
  return 0;
}
