package load

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"time"
)

// BodySize is what the backend answers every request with, in bytes.
const BodySize = 1024

// Backend serves HTTP/1.1 on each address, answering every request with
// BodySize bytes, in this process; stop closes it.
func Backend(addrs ...string) (stop func(), err error) {
	var stops []func()
	stopAll := func() {
		for _, s := range stops {
			s()
		}
	}
	for _, addr := range addrs {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			stopAll()
			return nil, fmt.Errorf("backend: %w", err)
		}
		stops = append(stops, Serve(ln))
	}
	return stopAll, nil
}

// Serve answers every request on ln with BodySize bytes (ln may be a TLS
// listener); stop closes it.
func Serve(ln net.Listener) (stop func()) {
	body := bytes.Repeat([]byte("x"), BodySize)
	s := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(body)
	}), ReadHeaderTimeout: 10 * time.Second}
	go s.Serve(ln)
	return func() { s.Close() }
}
