// Package lively is a small Go binding of os-lively's C ABI
// (include/os_lively.h) through cgo: connect, register a service, ask
// whether a service is UP by type and host, and subscribe to up/down
// changes with a callback.
//
// It follows cgo's rules for a C library that calls back from threads of
// its own:
//
//   - C never keeps a Go pointer. A subscription's userdata is a
//     runtime/cgo.Handle, an integer, and the Go state it names stays in
//     Go memory; the release callback deletes the handle once the library
//     says no callback will come again. Strings handed to C are copied
//     into C memory (C.CString) and freed after the call, and structs
//     passed by address hold only C pointers.
//   - lively_last_error() is per OS thread, and a goroutine may move to
//     another thread between two cgo calls: every fallible call and the
//     read of its message run under runtime.LockOSThread (see call).
//   - Callbacks arrive on a library thread that Go did not create; cgo
//     runs the exported Go function on that thread (already locked to it
//     for the call). The callback must return promptly and must not wait
//     for the goroutine that is closing the subscription: closing waits
//     for a callback in flight.
//
// The header comes from the repository (include/, three levels up); the
// library is found through CGO_LDFLAGS, for example against a cargo build:
//
//	CGO_LDFLAGS="-L$LIBDIR -Wl,-rpath,$LIBDIR" go build
//
// where $LIBDIR holds libos_lively.so and its soname link libos_lively.so.0
// (`make -C examples-c build/lib/libos_lively.so.0` makes both), or against
// an installed copy with CGO_CFLAGS and CGO_LDFLAGS from
// `pkg-config --cflags --libs os-lively`.
package lively

/*
#cgo CFLAGS: -I${SRCDIR}/../../../include
#cgo LDFLAGS: -los_lively
#include <stdint.h>
#include <stdlib.h>
#include "os_lively.h"

// The Go side of the callbacks (callbacks.go). userdata is a cgo.Handle.
extern void livelyGoEvent(uintptr_t handle, lively_event *event);
extern void livelyGoRelease(uintptr_t handle);

// C trampolines with the exact signatures the header declares, so no
// function pointer is cast to another type.
static void lively_go_on_event(void *userdata, const lively_event *event) {
	livelyGoEvent((uintptr_t)userdata, (lively_event *)event);
}

static void lively_go_on_release(void *userdata) {
	livelyGoRelease((uintptr_t)userdata);
}

// The handle crosses into C as an integer and becomes userdata here,
// so Go never turns an integer into an unsafe.Pointer.
static lively_result lively_go_subscribe(const lively_client *client, const lively_filter *filter,
		const lively_subscribe_options *options, uintptr_t handle, lively_subscription **out) {
	return lively_client_subscribe(client, filter, options, lively_go_on_event, (void *)handle,
		lively_go_on_release, out);
}

// The initializers are C macros (compound literals), so cgo cannot
// see them: these return them.
static lively_service lively_go_service_init(void) {
	lively_service s = LIVELY_SERVICE_INIT;
	return s;
}
static lively_filter lively_go_filter_init(void) {
	lively_filter f = LIVELY_FILTER_INIT;
	return f;
}
static lively_subscribe_options lively_go_subscribe_options_init(void) {
	lively_subscribe_options o = LIVELY_SUBSCRIBE_OPTIONS_INIT;
	return o;
}
*/
import "C"

import (
	"fmt"
	"runtime"
	"runtime/cgo"
	"strings"
	"unsafe"
)

// Result codes of the C API (lively_result) that callers test for.
const (
	ResultOK              = 0
	ResultInvalidArgument = 1
	ResultNotFound        = 2
	ResultClosed          = 8
)

// Error is a failed call: the C API's code, its fixed text, and the
// message lively_last_error() gave on the calling thread.
type Error struct {
	Op      string // the C function, e.g. "lively_client_update"
	Code    uint32 // a lively_result value
	Text    string // lively_result_str(Code), e.g. "invalid argument"
	Message string // lively_last_error(): the kind, then what was wrong, naming the input
}

func (e *Error) Error() string {
	return e.Op + ": " + e.Message
}

// call runs one fallible C call and, if it failed, reads
// lively_last_error() on the same OS thread: the message is
// thread-local, and without LockOSThread the scheduler could run the
// second cgo call on another thread and read that thread's message.
func call(op string, f func() C.lively_result) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	rc := f()
	if rc == C.LIVELY_RESULT_OK {
		return nil
	}
	return &Error{
		Op:      op,
		Code:    uint32(rc),
		Text:    C.GoString(C.lively_result_str(C.uint32_t(rc))),
		Message: C.GoString(C.lively_last_error()),
	}
}

// cString copies s into C memory (free it with C.free). A Go string may
// hold a NUL byte, which C would read as its end: "typ\x00evil" would
// reach the library as "typ". Refuse it here instead, naming the input,
// as the library refuses any other invalid value.
func cString(op, what, s string) (*C.char, error) {
	if i := strings.IndexByte(s, 0); i >= 0 {
		text := C.GoString(C.lively_result_str(ResultInvalidArgument))
		return nil, &Error{
			Op:      op,
			Code:    ResultInvalidArgument,
			Text:    text,
			Message: fmt.Sprintf("%s: %s %q contains a NUL byte at offset %d", text, what, s, i),
		}
	}
	return C.CString(s), nil
}

// cStrings converts several strings, freeing what it made if one is
// refused; free the result with freeAll.
func cStrings(op string, pairs ...string) ([]*C.char, error) {
	out := make([]*C.char, 0, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		c, err := cString(op, pairs[i], pairs[i+1])
		if err != nil {
			freeAll(out)
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func freeAll(cs []*C.char) {
	for _, c := range cs {
		C.free(unsafe.Pointer(c))
	}
}

// Config holds connection settings (lively_config).
type Config struct {
	c *C.lively_config
}

// ConfigFromEnv returns the defaults overridden by the OSLIVELY_*
// environment variables (OSLIVELY_ETCD_ENDPOINTS,
// OSLIVELY_ETCD_KEY_NAMESPACE, OSLIVELY_STATUS_TTL, ...).
func ConfigFromEnv() (*Config, error) {
	var c *C.lively_config
	if err := call("lively_config_from_env", func() C.lively_result {
		return C.lively_config_from_env(&c)
	}); err != nil {
		return nil, err
	}
	return &Config{c: c}, nil
}

// SetEndpoints sets the etcd endpoints from a comma-separated list.
func (cfg *Config) SetEndpoints(endpoints string) error {
	cs, err := cStrings("lively_config_set_endpoints", "endpoints", endpoints)
	if err != nil {
		return err
	}
	defer freeAll(cs)
	return call("lively_config_set_endpoints", func() C.lively_result {
		return C.lively_config_set_endpoints(cfg.c, cs[0])
	})
}

// SetStatusTTL sets how long, in seconds, a dead process's services
// stay UP.
func (cfg *Config) SetStatusTTL(seconds uint64) error {
	return call("lively_config_set_status_ttl", func() C.lively_result {
		return C.lively_config_set_status_ttl(cfg.c, C.uint64_t(seconds))
	})
}

// Free releases the config; clients connected with it are unaffected.
func (cfg *Config) Free() {
	C.lively_config_free(cfg.c)
	cfg.c = nil
}

// Client is a connection to etcd (lively_client). Safe for concurrent use.
type Client struct {
	c *C.lively_client
}

// Connect connects to etcd with cfg (which may be freed afterwards).
func Connect(cfg *Config) (*Client, error) {
	var c *C.lively_client
	if err := call("lively_client_connect", func() C.lively_result {
		return C.lively_client_connect(cfg.c, &c)
	}); err != nil {
		return nil, err
	}
	return &Client{c: c}, nil
}

// Register registers the service type+host as UP on this client's lease
// and returns its uuid. It stays UP while this process lives; if the
// process dies, it goes DOWN (expired) one status TTL later.
func (cl *Client) Register(serviceType, host string) (string, error) {
	const op = "lively_client_update"
	cs, err := cStrings(op, "service type", serviceType, "host", host)
	if err != nil {
		return "", err
	}
	defer freeAll(cs)
	// A Go value holding only C pointers: cgo lets C read it during the
	// call, and the library copies what it keeps.
	svc := C.lively_go_service_init()
	svc.service_type = cs[0]
	svc.host = cs[1]
	svc.status = C.LIVELY_STATUS_UP
	var buf [C.LIVELY_UUID_BUF_LEN]C.char
	if err := call(op, func() C.lively_result {
		return C.lively_client_update(cl.c, &svc, &buf[0], C.size_t(len(buf)))
	}); err != nil {
		return "", err
	}
	return C.GoString(&buf[0]), nil
}

// IsUpByTypeHost tells whether the service type+host is effectively UP:
// its record says UP and its registering process is alive.
func (cl *Client) IsUpByTypeHost(serviceType, host string) (bool, error) {
	const op = "lively_client_is_up_by_type_host"
	cs, err := cStrings(op, "service type", serviceType, "host", host)
	if err != nil {
		return false, err
	}
	defer freeAll(cs)
	var up C.bool
	if err := call(op, func() C.lively_result {
		return C.lively_client_is_up_by_type_host(cl.c, cs[0], cs[1], &up)
	}); err != nil {
		return false, err
	}
	return bool(up), nil
}

// Close revokes the client's lease (its services go DOWN at once, with
// reason "closed") and ends its subscriptions. Free it afterwards.
func (cl *Client) Close() error {
	return call("lively_client_close", func() C.lively_result {
		return C.lively_client_close(cl.c)
	})
}

// Free releases the handle (closing the connection if it was the last one).
func (cl *Client) Free() {
	C.lively_client_free(cl.c)
	cl.c = nil
}

// Event is one change of one service, copied out of the C event (whose
// strings are valid only during the callback).
type Event struct {
	Kind     string // existing, registered, up, down, updated, removed, resync
	Reason   string // for down: expired, closed, forced, missed, deleted, ...; "" otherwise
	Up       bool   // effectively UP after the change
	UUID     string
	Type     string
	Host     string
	Revision int64
}

var kindNames = map[C.lively_event_kind]string{
	C.LIVELY_EVENT_KIND_EXISTING:   "existing",
	C.LIVELY_EVENT_KIND_REGISTERED: "registered",
	C.LIVELY_EVENT_KIND_UP:         "up",
	C.LIVELY_EVENT_KIND_DOWN:       "down",
	C.LIVELY_EVENT_KIND_UPDATED:    "updated",
	C.LIVELY_EVENT_KIND_REMOVED:    "removed",
	C.LIVELY_EVENT_KIND_RESYNC:     "resync",
}

var reasonNames = map[C.lively_down_reason]string{
	C.LIVELY_DOWN_REASON_NONE:     "",
	C.LIVELY_DOWN_REASON_FORCED:   "forced",
	C.LIVELY_DOWN_REASON_EXPIRED:  "expired",
	C.LIVELY_DOWN_REASON_DELETED:  "deleted",
	C.LIVELY_DOWN_REASON_MISSED:   "missed",
	C.LIVELY_DOWN_REASON_MOVED:    "moved",
	C.LIVELY_DOWN_REASON_LIFTED:   "lifted",
	C.LIVELY_DOWN_REASON_CLOSED:   "closed",
	C.LIVELY_DOWN_REASON_DECLARED: "declared",
}

// Subscription delivers events to a Go function until closed.
type Subscription struct {
	c    *C.lively_subscription
	done chan struct{}
}

// subscriber is the Go state a subscription's cgo.Handle names.
type subscriber struct {
	fn   func(Event)
	done chan struct{} // closed by the release callback
}

// Subscribe calls fn for every change of the services of serviceType
// ("" for all), starting with an "existing" event per service when
// snapshot is set. fn runs on a library thread, one event at a time: it
// must return promptly (hand slow work to a goroutine through a buffered
// channel) and must not wait for a goroutine that is calling Close.
func (cl *Client) Subscribe(serviceType string, snapshot bool, fn func(Event)) (*Subscription, error) {
	const op = "lively_client_subscribe"
	filter := C.lively_go_filter_init()
	if serviceType != "" {
		cs, err := cStrings(op, "service type", serviceType)
		if err != nil {
			return nil, err
		}
		defer freeAll(cs)
		filter.service_type = cs[0]
	}
	opts := C.lively_go_subscribe_options_init()
	opts.snapshot = C.bool(snapshot)
	done := make(chan struct{})
	h := cgo.NewHandle(&subscriber{fn: fn, done: done})
	var sub *C.lively_subscription
	if err := call(op, func() C.lively_result {
		return C.lively_go_subscribe(cl.c, &filter, &opts, C.uintptr_t(h), &sub)
	}); err != nil {
		// On failure the library never calls back: the handle is ours.
		h.Delete()
		return nil, err
	}
	return &Subscription{c: sub, done: done}, nil
}

// Done is closed once the subscription has ended for good (after Close,
// or when its client was closed) and its last callback has returned.
func (s *Subscription) Done() <-chan struct{} {
	return s.done
}

// Close cancels and frees the subscription. Once it returns (called
// outside fn) no callback is running or will start. Call it from one
// goroutine only.
func (s *Subscription) Close() {
	if s.c != nil {
		C.lively_subscription_free(s.c)
		s.c = nil
	}
}

// Version is the loaded library's version string.
func Version() string {
	return C.GoString(C.lively_version())
}
