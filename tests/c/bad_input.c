/*
 * Bad input through the C API: NULLs, invalid UTF-8, unknown enum values,
 * small buffers, unknown codes, unreachable etcd. Every call must return
 * its documented code (never crash). Settings from OSLIVELY_* (a live
 * etcd, given by tests/c_api.rs). Exits 0 when every check passed.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdbool.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "os_lively.h"

#define CHECK(cond)                                                                      \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      fprintf(stderr, "bad_input.c:%d: CHECK failed: %s (last error: %s)\n", __LINE__, \
              #cond, lively_last_error());                                               \
      exit(1);                                                                           \
    }                                                                                    \
  } while (0)

#define IS(code, call) CHECK((call) == (code))
#define OK(call) IS(LIVELY_RESULT_OK, call)
#define NUL_P LIVELY_RESULT_NULL_PARAMETER

static void noop_event(void *userdata, const lively_event *e) {
  (void)userdata;
  (void)e;
}

static bool last_error_has(const char *needle) {
  return strstr(lively_last_error(), needle) != NULL;
}

/* Sets `name` to `value` for one lively_config_from_env(), which must fail
 * with CONFIG naming the variable; then restores the variable. */
static void check_env_refused(const char *name, const char *value) {
  char *old = getenv(name) ? strdup(getenv(name)) : NULL;
  CHECK(setenv(name, value, 1) == 0);
  lively_config *cfg = NULL;
  lively_result rc = lively_config_from_env(&cfg);
  if (rc != LIVELY_RESULT_CONFIG || cfg != NULL || !last_error_has(name)) {
    fprintf(stderr, "bad_input.c: %s=%s gave %d (%s)\n", name, value, (int)rc, lively_last_error());
    exit(1);
  }
  if (old) {
    CHECK(setenv(name, old, 1) == 0);
    free(old);
  } else {
    CHECK(unsetenv(name) == 0);
  }
}

int main(void) {
  static const char bad_utf8[] = {'h', (char)0xff, 'x', 0};
  const char *valid_uuid = "0123456789abcdef0123456789abcdef";

  /* Texts and frees. */
  CHECK(strcmp(lively_result_str(LIVELY_RESULT_OK), "ok") == 0);
  CHECK(strcmp(lively_result_str(99999), "unknown code") == 0);
  CHECK(strcmp(lively_result_str(LIVELY_RESULT_NULL_PARAMETER), "NULL parameter") == 0);
  lively_config_free(NULL);
  lively_client_free(NULL);
  lively_subscription_free(NULL);
  lively_service_info_free(NULL);
  lively_service_list_free(NULL);
  lively_event_free(NULL);
  lively_string_free(NULL);

  /* Log levels are validated. */
  IS(LIVELY_RESULT_INVALID_ARGUMENT, lively_set_log_callback(NULL, NULL, 6));
  CHECK(last_error_has("max_level"));

  /* Config. */
  IS(NUL_P, lively_config_from_env(NULL));
  IS(NUL_P, lively_config_set_endpoints(NULL, "localhost:2379"));
  IS(NUL_P, lively_config_set_namespace(NULL, "x"));
  IS(NUL_P, lively_config_set_status_ttl(NULL, 5));
  IS(NUL_P, lively_config_set_user(NULL, "u", "p"));
  lively_config *config = lively_config_new();
  CHECK(config != NULL);
  IS(NUL_P, lively_config_set_endpoints(config, NULL));
  CHECK(last_error_has("endpoints"));
  IS(LIVELY_RESULT_INVALID_UTF8, lively_config_set_endpoints(config, bad_utf8));
  IS(LIVELY_RESULT_INVALID_UTF8, lively_config_set_namespace(config, bad_utf8));
  IS(NUL_P, lively_config_set_endpoints_array(config, NULL, 1));
  const char *eps[] = {"127.0.0.1:1", NULL};
  IS(NUL_P, lively_config_set_endpoints_array(config, eps, 2));
  /* One code per kind of mistake: every value a setter cannot use is
   * CONFIG, with the documented bounds. */
  IS(LIVELY_RESULT_CONFIG, lively_config_set_endpoints(config, ""));
  IS(LIVELY_RESULT_CONFIG, lively_config_set_status_ttl(config, 0));
  IS(LIVELY_RESULT_CONFIG, lively_config_set_status_ttl(config, 31536001));
  IS(LIVELY_RESULT_CONFIG, lively_config_set_status_ttl(config, (uint64_t)1 << 59));
  CHECK(last_error_has("31536000"));
  IS(LIVELY_RESULT_CONFIG, lively_config_set_status_ttl(config, (uint64_t)1 << 63));
  OK(lively_config_set_status_ttl(config, 31536000));
  IS(LIVELY_RESULT_CONFIG, lively_config_set_connect_timeout_ms(config, 0));
  IS(LIVELY_RESULT_CONFIG, lively_config_set_connect_timeout_ms(config, 86400001));
  IS(LIVELY_RESULT_CONFIG, lively_config_set_request_timeout_ms(config, 0));
  IS(LIVELY_RESULT_CONFIG, lively_config_set_request_timeout_ms(config, UINT64_MAX));
  IS(LIVELY_RESULT_CONFIG, lively_config_set_call_polling_us(config, 100001));
  IS(NUL_P, lively_config_set_user(config, "u", NULL));

  /* The environment is strict: a variable that is set but not UTF-8, or
   * out of range, is CONFIG naming it (never ignored). */
  check_env_refused("OSLIVELY_ETCD_KEY_NAMESPACE", "bin\xff");
  check_env_refused("OSLIVELY_ETCD_ENDPOINTS", "\xff");
  check_env_refused("OSLIVELY_STATUS_TTL", "\xff");
  check_env_refused("OSLIVELY_STATUS_TTL", "31536001");
  check_env_refused("OSLIVELY_STATUS_TTL", "0");
  check_env_refused("OSLIVELY_ETCD_REQUEST_TIMEOUT", "86401");
  {
    char *old_user = getenv("OSLIVELY_ETCD_USER") ? strdup(getenv("OSLIVELY_ETCD_USER")) : NULL;
    CHECK(setenv("OSLIVELY_ETCD_USER", "alice", 1) == 0);
    check_env_refused("OSLIVELY_ETCD_PASSWORD", "pw\xff");
    CHECK(!last_error_has("pw")); /* the value is not echoed */
    if (old_user) {
      CHECK(setenv("OSLIVELY_ETCD_USER", old_user, 1) == 0);
      free(old_user);
    } else {
      CHECK(unsetenv("OSLIVELY_ETCD_USER") == 0);
    }
  }

  /* Nothing listens on port 1: a clear, fast error naming the endpoint. */
  OK(lively_config_set_endpoints_array(config, eps, 1));
  OK(lively_config_set_connect_timeout_ms(config, 500));
  const lively_client *client = NULL;
  lively_result rc = lively_client_connect(config, &client);
  CHECK(rc == LIVELY_RESULT_UNAVAILABLE || rc == LIVELY_RESULT_TIMEOUT);
  CHECK(client == NULL);
  CHECK(last_error_has("127.0.0.1:1"));
  lively_config_free(config);

  /* A live client for the rest. */
  config = NULL;
  OK(lively_config_from_env(&config));
  IS(NUL_P, lively_client_connect(config, NULL));
  IS(NUL_P, lively_client_connect(NULL, &client));
  OK(lively_client_connect(config, &client));
  lively_config_free(config);

  bool up = true;
  IS(NUL_P, lively_client_is_up(NULL, valid_uuid, &up));
  IS(NUL_P, lively_client_is_up(client, NULL, &up));
  IS(NUL_P, lively_client_is_up(client, valid_uuid, NULL));
  IS(LIVELY_RESULT_INVALID_UTF8, lively_client_is_up(client, bad_utf8, &up));
  IS(LIVELY_RESULT_INVALID_ARGUMENT, lively_client_is_up(client, "not-a-uuid", &up));
  CHECK(up); /* outputs untouched on failure */
  IS(NUL_P, lively_client_is_up_by_type_host(client, "t", NULL, &up));
  IS(LIVELY_RESULT_INVALID_ARGUMENT, lively_client_is_up_by_type_host(client, "a/b", "h", &up));

  /* Records: required fields, enum values, key segments, buffers. */
  char uuid[LIVELY_UUID_BUF_LEN] = "untouched";
  lively_service s = LIVELY_SERVICE_INIT;
  s.service_type = "bad";
  s.host = "h";
  IS(NUL_P, lively_client_update(client, NULL, uuid, sizeof uuid));
  s.status = 2;
  IS(LIVELY_RESULT_INVALID_ARGUMENT, lively_client_update(client, &s, uuid, sizeof uuid));
  CHECK(last_error_has("lively_status"));
  s.status = 0xffffffffu;
  IS(LIVELY_RESULT_INVALID_ARGUMENT, lively_client_update(client, &s, uuid, sizeof uuid));
  s.status = LIVELY_STATUS_UP;
  s.host = NULL;
  IS(NUL_P, lively_client_update(client, &s, uuid, sizeof uuid));
  s.host = bad_utf8;
  IS(LIVELY_RESULT_INVALID_UTF8, lively_client_update(client, &s, uuid, sizeof uuid));
  s.host = "a/b";
  IS(LIVELY_RESULT_INVALID_ARGUMENT, lively_client_update(client, &s, uuid, sizeof uuid));
  s.host = "h";
  s.uuid = "xyz";
  IS(LIVELY_RESULT_INVALID_ARGUMENT, lively_client_update(client, &s, uuid, sizeof uuid));
  s.uuid = NULL;
  IS(LIVELY_RESULT_INVALID_ARGUMENT, lively_client_update(client, &s, uuid, 8));
  CHECK(strcmp(uuid, "untouched") == 0);
  /* Nothing was written by the failures above. */
  lively_service_list *list = NULL;
  OK(lively_client_list(client, NULL, &list));
  CHECK(list->len == 0);
  lively_service_list_free(list);

  const uint8_t garbage[] = {0xff, 0xff, 0xff};
  IS(NUL_P, lively_client_update_bytes(client, NULL, 3, NULL, 0));
  IS(LIVELY_RESULT_INVALID_ARGUMENT, lively_client_update_bytes(client, garbage, 3, NULL, 0));
  IS(LIVELY_RESULT_INVALID_ARGUMENT, lively_client_update_bytes(client, NULL, 0, NULL, 0));

  lively_service_info *info = NULL;
  IS(NUL_P, lively_client_get(client, valid_uuid, NULL));
  IS(LIVELY_RESULT_NOT_FOUND, lively_client_get(client, valid_uuid, &info));
  IS(LIVELY_RESULT_NOT_FOUND, lively_client_get_by_type_host(client, "t", "h", &info));
  CHECK(info == NULL);

  lively_filter f = LIVELY_FILTER_INIT;
  f.has_status = true;
  f.status = 7;
  IS(LIVELY_RESULT_INVALID_ARGUMENT, lively_client_list(client, &f, &list));
  f.has_status = false;
  f.region = bad_utf8;
  IS(LIVELY_RESULT_INVALID_UTF8, lively_client_list(client, &f, &list));
  IS(NUL_P, lively_client_list(client, NULL, NULL));

  IS(LIVELY_RESULT_NOT_FOUND, lively_client_down(client, valid_uuid, NULL, 0, 0));
  IS(LIVELY_RESULT_INVALID_UTF8, lively_client_down(client, valid_uuid, bad_utf8, 0, 0));
  IS(NUL_P, lively_client_delete(client, NULL, NULL));
  IS(NUL_P, lively_client_stats(client, NULL));

  /* Subscriptions. */
  lively_subscription *sub = NULL;
  IS(NUL_P, lively_client_subscribe(client, NULL, NULL, NULL, NULL, NULL, &sub));
  IS(NUL_P, lively_client_subscribe(client, NULL, NULL, noop_event, NULL, NULL, NULL));
  lively_filter by_status = LIVELY_FILTER_INIT;
  by_status.has_status = true;
  by_status.status = LIVELY_STATUS_UP;
  IS(LIVELY_RESULT_INVALID_ARGUMENT,
     lively_client_subscribe(client, &by_status, NULL, noop_event, NULL, NULL, &sub));
  lively_filter bad_filter = LIVELY_FILTER_INIT;
  bad_filter.host = bad_utf8;
  IS(LIVELY_RESULT_INVALID_UTF8,
     lively_client_subscribe(client, &bad_filter, NULL, noop_event, NULL, NULL, &sub));
  CHECK(sub == NULL);
  IS(NUL_P, lively_subscription_next(NULL, 0, NULL));
  IS(NUL_P, lively_subscription_cancel(NULL));

  /* The last error belongs to the thread; success leaves it alone. */
  IS(NUL_P, lively_client_stats(NULL, NULL));
  CHECK(last_error_has("client"));
  lively_stats st = LIVELY_STATS_INIT;
  OK(lively_client_stats(client, &st));
  CHECK(last_error_has("client"));

  /* After fork() the child gets a clear error instead of hanging on the
   * parent's runtime thread, and its inherited view and subscription do not
   * answer from a copy frozen at the fork. (The answers go through a pipe:
   * under valgrind the child's exit status reports the parent's memory.) */
  const lively_view *view = NULL;
  OK(lively_view_new(client, 0, &view));
  lively_subscription *pull = NULL;
  OK(lively_client_subscribe_pull(client, NULL, NULL, &pull));
  int fds[2];
  CHECK(pipe(fds) == 0);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    lively_event *ev = NULL;
    char answers[3] = {
        lively_client_is_up(client, valid_uuid, &up) == LIVELY_RESULT_FORKED ? 'F' : '?',
        lively_view_is_up(view, valid_uuid, &up) == LIVELY_RESULT_FORKED ? 'F' : '?',
        lively_subscription_next(pull, 0, &ev) == LIVELY_RESULT_FORKED ? 'F' : '?',
    };
    if (write(fds[1], answers, sizeof answers) != sizeof answers) _exit(3);
    _exit(0);
  }
  close(fds[1]);
  char answers[4] = {0};
  CHECK(read(fds[0], answers, 3) == 3);
  close(fds[0]);
  waitpid(pid, NULL, 0);
  CHECK(strcmp(answers, "FFF") == 0);
  OK(lively_client_is_up(client, valid_uuid, &up)); /* the parent is unaffected */
  OK(lively_view_is_up(view, valid_uuid, &up));
  lively_subscription_free(pull);
  lively_view_free(view);

  OK(lively_client_close(client));
  IS(LIVELY_RESULT_CLOSED, lively_client_is_up(client, valid_uuid, &up));
  IS(LIVELY_RESULT_CLOSED, lively_client_update(client, &s, uuid, sizeof uuid));
  lively_client_free(client);
  printf("bad_input: ok\n");
  return 0;
}
