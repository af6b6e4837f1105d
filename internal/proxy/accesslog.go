package proxy

import (
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// Access logs: one JSON object per line for every request (and every TCP
// connection) a listener handled, written with one Write call to the
// configured writer (trellis-proxy --access-log). A request the proxy
// answered itself, or that failed, has response_flags (Envoy's short
// names) and a reason: no_healthy_upstream, upstream_connect_failure,
// upstream_timeout, upstream_reset, no_route, no_cluster,
// denied_by_policy, rate_limited, fault_injected_abort,
// fault_injected_delay, downstream_terminated, upstream_overflow,
// invalid_request. Fields are documented in
// docs/telemetry.md.

// accessLog writes access log lines to w.
type accessLog struct {
	mu sync.Mutex
	w  io.Writer
}

func newAccessLog(w io.Writer) *accessLog {
	if w == nil {
		return nil
	}
	return &accessLog{w: w}
}

var logBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func (a *accessLog) write(b []byte) {
	a.mu.Lock()
	_, _ = a.w.Write(b)
	a.mu.Unlock()
}

func (a *accessLog) request(rec *httpRecord, req *http.Request, k *requestKey, elapsed time.Duration, reqBytes int64) {
	bp := logBufPool.Get().(*[]byte)
	b := (*bp)[:0]
	b = append(b, `{"start_time":"`...)
	b = rec.start.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	b = append(b, `","reporter":"`...)
	b = append(b, k.reporter...)
	b = append(b, '"')
	b = appendField(b, "method", req.Method)
	b = appendField(b, "path", req.URL.RequestURI())
	b = appendField(b, "protocol", req.Proto)
	b = appendField(b, "authority", req.Host)
	b = append(b, `,"response_code":`...)
	b = strconv.AppendInt(b, int64(k.code), 10)
	if k.grpc != "" {
		b = appendField(b, "grpc_status", k.grpc)
	}
	b = appendField(b, "response_flags", k.flags.String())
	b = appendField(b, "reason", k.flags.reason())
	b = append(b, `,"bytes_received":`...)
	b = strconv.AppendInt(b, max(reqBytes, 0), 10)
	b = append(b, `,"bytes_sent":`...)
	b = strconv.AppendInt(b, rec.written, 10)
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendFloat(b, float64(elapsed.Microseconds())/1000, 'f', 3, 64)
	b = appendField(b, "upstream_cluster", rec.cluster)
	b = appendField(b, "downstream_remote_address", req.RemoteAddr)
	b = appendField(b, "source_workload", k.src.workload)
	b = appendField(b, "source_namespace", k.src.namespace)
	b = appendField(b, "source_principal", k.src.principal)
	b = appendField(b, "destination_workload", k.dst.workload)
	b = appendField(b, "destination_namespace", k.dst.namespace)
	b = appendField(b, "destination_service", k.service)
	b = appendField(b, "request_id", req.Header.Get(headerRequestID))
	b = appendField(b, "user_agent", req.UserAgent())
	b = appendHexField(b, "trace_id", rec.trace.traceID[:])
	b = appendHexField(b, "span_id", rec.trace.spanID[:])
	if rec.trace.parent != [8]byte{} {
		b = appendHexField(b, "parent_span_id", rec.trace.parent[:])
	}
	b = append(b, "}\n"...)
	a.write(b)
	*bp = b
	logBufPool.Put(bp)
}

func (a *accessLog) tcp(k *tcpKey, down net.Conn, cluster, upstream string, start time.Time, received, sent int64) {
	bp := logBufPool.Get().(*[]byte)
	b := (*bp)[:0]
	b = append(b, `{"start_time":"`...)
	b = start.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	b = append(b, `","reporter":"`...)
	b = append(b, k.reporter...)
	b = append(b, `","protocol":"TCP"`...)
	b = appendField(b, "response_flags", k.flags.String())
	b = appendField(b, "reason", k.flags.reason())
	b = append(b, `,"bytes_received":`...)
	b = strconv.AppendInt(b, received, 10)
	b = append(b, `,"bytes_sent":`...)
	b = strconv.AppendInt(b, sent, 10)
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendFloat(b, float64(time.Since(start).Microseconds())/1000, 'f', 3, 64)
	b = appendField(b, "upstream_cluster", cluster)
	b = appendField(b, "upstream_host", upstream)
	b = appendField(b, "downstream_remote_address", down.RemoteAddr().String())
	b = appendField(b, "source_workload", k.src.workload)
	b = appendField(b, "source_namespace", k.src.namespace)
	b = appendField(b, "source_principal", k.src.principal)
	b = appendField(b, "destination_workload", k.dst.workload)
	b = appendField(b, "destination_namespace", k.dst.namespace)
	b = appendField(b, "destination_service", k.service)
	b = append(b, "}\n"...)
	a.write(b)
	*bp = b
	logBufPool.Put(bp)
}

func appendField(b []byte, name, value string) []byte {
	b = append(b, `,"`...)
	b = append(b, name...)
	b = append(b, `":`...)
	return appendJSONString(b, value)
}

func appendHexField(b []byte, name string, v []byte) []byte {
	b = append(b, `,"`...)
	b = append(b, name...)
	b = append(b, `":"`...)
	b = hex.AppendEncode(b, v)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string; invalid UTF-8 becomes
// U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
