// lively-go: a Go daemon and watcher over os-lively's C ABI (package
// lively, cgo).
//
//	lively-go daemon TYPE HOST   register TYPE+HOST UP, print "uuid <uuid>" and
//	                             "is-up TYPE HOST up", then run until SIGINT/SIGTERM
//	                             (which close the client: DOWN at once)
//	lively-go watch [TYPE]       print one line per event until SIGINT/SIGTERM:
//	                             "existing up <uuid> <type> <host>" for the
//	                             snapshot, then e.g. "down (expired) <uuid> <type> <host>"
//	lively-go is-up TYPE HOST    print "up" (exit 0) or "down" (exit 1)
//	lively-go bad-input          show that bad input is refused with a message
//
// Settings come from the OSLIVELY_* environment variables
// (OSLIVELY_ETCD_ENDPOINTS, OSLIVELY_ETCD_KEY_NAMESPACE,
// OSLIVELY_STATUS_TTL, ...).
package main

import (
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"os-lively.example/lively-go/lively"
)

func usage() {
	fmt.Fprintln(os.Stderr, "usage: lively-go daemon TYPE HOST | watch [TYPE] | is-up TYPE HOST | bad-input")
	os.Exit(2)
}

func fail(what string, err error) {
	fmt.Fprintf(os.Stderr, "lively-go: %s: %v\n", what, err)
	os.Exit(2)
}

func connect() *lively.Client {
	cfg, err := lively.ConfigFromEnv()
	if err != nil {
		fail("configuration", err)
	}
	defer cfg.Free()
	client, err := lively.Connect(cfg)
	if err != nil {
		fail("connect", err)
	}
	return client
}

// stopSignals receives SIGINT and SIGTERM from now on (before the first
// line is printed, so whoever reads it may stop us at once). Go's runtime
// receives a signal whichever thread, Go's or the library's, the kernel
// picks.
func stopSignals() <-chan os.Signal {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	return stop
}

func daemon(serviceType, host string) {
	stop := stopSignals()
	client := connect()
	uuid, err := client.Register(serviceType, host)
	if err != nil {
		fail("register", err)
	}
	fmt.Printf("uuid %s\n", uuid)
	up, err := client.IsUpByTypeHost(serviceType, host)
	if err != nil {
		fail("is-up", err)
	}
	fmt.Printf("is-up %s %s %s\n", serviceType, host, upDown(up))
	sig := <-stop
	fmt.Fprintf(os.Stderr, "lively-go: stopping on %v\n", sig)
	err = client.Close()
	client.Free()
	if err != nil {
		fail("close", err)
	}
}

func watch(serviceType string) {
	stop := stopSignals()
	client := connect()
	// The callback runs on a library thread; stdout is shared with the
	// main goroutine, so lines go out whole under a mutex.
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Printf(format, args...)
	}
	sub, err := client.Subscribe(serviceType, true, func(e lively.Event) {
		switch {
		case e.Kind == "existing":
			say("existing %s %s %s %s\n", upDown(e.Up), e.UUID, e.Type, e.Host)
		case e.Reason != "":
			say("%s (%s) %s %s %s\n", e.Kind, e.Reason, e.UUID, e.Type, e.Host)
		default:
			say("%s %s %s %s\n", e.Kind, e.UUID, e.Type, e.Host)
		}
	})
	if err != nil {
		fail("subscribe", err)
	}
	fmt.Fprintln(os.Stderr, "lively-go: watching")
	<-stop
	sub.Close() // no callback runs or starts after this
	<-sub.Done()
	client.Free()
}

func isUp(serviceType, host string) {
	client := connect()
	up, err := client.IsUpByTypeHost(serviceType, host)
	client.Free()
	if err != nil {
		fail("is-up", err)
	}
	fmt.Println(upDown(up))
	if !up {
		os.Exit(1)
	}
}

// badInput prints the error of each refused call, one per line:
// the binding's own check (a NUL byte Go strings may hold and C cannot)
// and the library's (a '/' in a key segment).
func badInput() {
	client := connect()
	defer client.Free()
	for _, t := range []string{"typ\x00evil", "typ/evil"} {
		if _, err := client.Register(t, "host-1"); err != nil {
			fmt.Printf("refused %q: %v\n", t, err)
		} else {
			fmt.Printf("accepted %q\n", t)
		}
	}
	up, err := client.IsUpByTypeHost("typ", "host-1")
	if err != nil {
		fail("is-up", err)
	}
	fmt.Printf("is-up typ host-1 %s\n", upDown(up))
}

func upDown(up bool) string {
	if up {
		return "up"
	}
	return "down"
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch args := os.Args[2:]; os.Args[1] {
	case "daemon":
		if len(args) != 2 {
			usage()
		}
		daemon(args[0], args[1])
	case "watch":
		if len(args) > 1 {
			usage()
		}
		t := ""
		if len(args) == 1 {
			t = args[0]
		}
		watch(t)
	case "is-up":
		if len(args) != 2 {
			usage()
		}
		isUp(args[0], args[1])
	case "bad-input":
		badInput()
	default:
		usage()
	}
}
