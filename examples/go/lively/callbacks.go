package lively

// A file with //export may only declare, not define, in its preamble.

/*
#include <stdint.h>
#include "os_lively.h"
*/
import "C"

import (
	"fmt"
	"os"
	"runtime/cgo"
)

// livelyGoEvent runs on a library thread for each event. The event and
// its strings are valid only during the call, so everything is copied
// into Go strings before fn sees it.
//
//export livelyGoEvent
func livelyGoEvent(handle C.uintptr_t, ev *C.lively_event) {
	s := cgo.Handle(handle).Value().(*subscriber)
	e := Event{
		Kind:     kindNames[ev.kind],
		Reason:   reasonNames[ev.reason],
		UUID:     C.GoString(ev.uuid),
		Type:     C.GoString(ev.service_type),
		Host:     C.GoString(ev.host),
		Revision: int64(ev.revision),
		Up:       ev.new_status == C.LIVELY_STATUS_UP,
	}
	if e.Kind == "" {
		e.Kind = fmt.Sprintf("kind-%d", uint32(ev.kind))
	}
	// A panic must not unwind into the library's (Rust) frames: report
	// it and drop the event.
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(os.Stderr, "lively: subscription callback panicked: %v\n", r)
		}
	}()
	s.fn(e)
}

// livelyGoRelease runs exactly once, after the last livelyGoEvent of the
// subscription returned: only now may the handle go.
//
//export livelyGoRelease
func livelyGoRelease(handle C.uintptr_t) {
	h := cgo.Handle(handle)
	close(h.Value().(*subscriber).done)
	h.Delete()
}
