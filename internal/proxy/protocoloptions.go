package proxy

import (
	"errors"
	"fmt"
	"time"

	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// HTTPProtocolOptionsKey is the typed_extension_protocol_options key of the
// upstream HTTP protocol options.
const HTTPProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// defaultUpstreamIdleTimeout is how long an idle upstream connection stays
// open when the cluster does not say.
const defaultUpstreamIdleTimeout = 60 * time.Second

// compileProtocolOptions reads typed_extension_protocol_options: only the
// upstream HTTP protocol options, with HTTP/1.1 or HTTP/2 (http2 reports
// which: HTTP/2 over mTLS negotiated with ALPN, h2c with prior knowledge
// in plaintext) and the idle timeout of upstream connections, after which
// an idle pooled connection is closed (0 disables it, as in Envoy).
func compileProtocolOptions(opts map[string]*anypb.Any) (idle time.Duration, http2 bool, err error) {
	idle = defaultUpstreamIdleTimeout
	for key, a := range opts {
		if key != HTTPProtocolOptionsKey {
			return 0, false, fmt.Errorf("typed_extension_protocol_options[%q]: not supported (%s is)", key, HTTPProtocolOptionsKey)
		}
		msg, err := a.UnmarshalNew()
		if err != nil {
			return 0, false, fmt.Errorf("typed_extension_protocol_options[%q]: %w", key, err)
		}
		po, ok := msg.(*upstreamhttpv3.HttpProtocolOptions)
		if !ok {
			return 0, false, fmt.Errorf("typed_extension_protocol_options[%q]: %T is not HttpProtocolOptions", key, msg)
		}
		if err := unsupported(po, "common_http_protocol_options", "explicit_http_config"); err != nil {
			return 0, false, fmt.Errorf("typed_extension_protocol_options[%q]: %w", key, err)
		}
		ex := po.GetExplicitHttpConfig()
		switch {
		case ex.GetHttpProtocolOptions() != nil:
			if err := unsupported(ex.GetHttpProtocolOptions()); err != nil {
				return 0, false, fmt.Errorf("HttpProtocolOptions: explicit_http_config: %w", err)
			}
		case ex.GetHttp2ProtocolOptions() != nil:
			if err := unsupported(ex.GetHttp2ProtocolOptions()); err != nil {
				return 0, false, fmt.Errorf("HttpProtocolOptions: explicit_http_config: %w", err)
			}
			http2 = true
		default:
			return 0, false, errors.New("HttpProtocolOptions: explicit_http_config with http_protocol_options (HTTP/1.1) or http2_protocol_options is required")
		}
		if c := po.GetCommonHttpProtocolOptions(); c != nil {
			if err := unsupported(c, "idle_timeout"); err != nil {
				return 0, false, fmt.Errorf("HttpProtocolOptions: %w", err)
			}
			if d := c.GetIdleTimeout(); d != nil {
				if err := d.CheckValid(); err != nil || d.AsDuration() < 0 {
					return 0, false, fmt.Errorf("HttpProtocolOptions: common_http_protocol_options.idle_timeout: invalid duration")
				}
				idle = d.AsDuration()
			}
		}
	}
	return idle, http2, nil
}
