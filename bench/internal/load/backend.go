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
	body := bytes.Repeat([]byte("x"), BodySize)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(body)
	})
	var srvs []*http.Server
	for _, addr := range addrs {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			for _, s := range srvs {
				s.Close()
			}
			return nil, fmt.Errorf("backend: %w", err)
		}
		s := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		srvs = append(srvs, s)
		go s.Serve(ln)
	}
	return func() {
		for _, s := range srvs {
			s.Close()
		}
	}, nil
}
