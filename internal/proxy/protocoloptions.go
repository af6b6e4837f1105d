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

// upstreamProtocol is the HTTP version a cluster speaks upstream.
type upstreamProtocol int

const (
	upstreamHTTP1 upstreamProtocol = iota
	// upstreamHTTP2: HTTP/2 over mTLS negotiated with ALPN, h2c with
	// prior knowledge in plaintext.
	upstreamHTTP2
	// upstreamDownstream: the version each request came in with (Envoy's
	// use_downstream_protocol_config), for ports whose protocol is
	// detected per connection.
	upstreamDownstream
)

// compileProtocolOptions reads typed_extension_protocol_options: only the
// upstream HTTP protocol options, with HTTP/1.1, HTTP/2 or the downstream
// protocol, and the idle timeout of upstream connections, after which an
// idle pooled connection is closed (0 disables it, as in Envoy).
func compileProtocolOptions(opts map[string]*anypb.Any) (idle time.Duration, proto upstreamProtocol, err error) {
	idle = defaultUpstreamIdleTimeout
	for key, a := range opts {
		if key != HTTPProtocolOptionsKey {
			return 0, 0, fmt.Errorf("typed_extension_protocol_options[%q]: not supported (%s is)", key, HTTPProtocolOptionsKey)
		}
		msg, err := a.UnmarshalNew()
		if err != nil {
			return 0, 0, fmt.Errorf("typed_extension_protocol_options[%q]: %w", key, err)
		}
		po, ok := msg.(*upstreamhttpv3.HttpProtocolOptions)
		if !ok {
			return 0, 0, fmt.Errorf("typed_extension_protocol_options[%q]: %T is not HttpProtocolOptions", key, msg)
		}
		if err := unsupported(po, "common_http_protocol_options", "explicit_http_config", "use_downstream_protocol_config"); err != nil {
			return 0, 0, fmt.Errorf("typed_extension_protocol_options[%q]: %w", key, err)
		}
		if ds := po.GetUseDownstreamProtocolConfig(); ds != nil {
			if err := unsupported(ds, "http_protocol_options", "http2_protocol_options"); err != nil {
				return 0, 0, fmt.Errorf("HttpProtocolOptions: use_downstream_protocol_config: %w", err)
			}
			if h1 := ds.GetHttpProtocolOptions(); h1 != nil {
				if err := unsupported(h1); err != nil {
					return 0, 0, fmt.Errorf("HttpProtocolOptions: use_downstream_protocol_config.http_protocol_options: %w", err)
				}
			}
			if h2 := ds.GetHttp2ProtocolOptions(); h2 != nil {
				if err := unsupported(h2); err != nil {
					return 0, 0, fmt.Errorf("HttpProtocolOptions: use_downstream_protocol_config.http2_protocol_options: %w", err)
				}
			}
			proto = upstreamDownstream
		} else {
			ex := po.GetExplicitHttpConfig()
			switch {
			case ex.GetHttpProtocolOptions() != nil:
				if err := unsupported(ex.GetHttpProtocolOptions()); err != nil {
					return 0, 0, fmt.Errorf("HttpProtocolOptions: explicit_http_config: %w", err)
				}
			case ex.GetHttp2ProtocolOptions() != nil:
				if err := unsupported(ex.GetHttp2ProtocolOptions()); err != nil {
					return 0, 0, fmt.Errorf("HttpProtocolOptions: explicit_http_config: %w", err)
				}
				proto = upstreamHTTP2
			default:
				return 0, 0, errors.New("HttpProtocolOptions: explicit_http_config with http_protocol_options (HTTP/1.1) or http2_protocol_options, or use_downstream_protocol_config, is required")
			}
		}
		if c := po.GetCommonHttpProtocolOptions(); c != nil {
			if err := unsupported(c, "idle_timeout"); err != nil {
				return 0, 0, fmt.Errorf("HttpProtocolOptions: %w", err)
			}
			if d := c.GetIdleTimeout(); d != nil {
				if err := d.CheckValid(); err != nil || d.AsDuration() < 0 {
					return 0, 0, fmt.Errorf("HttpProtocolOptions: common_http_protocol_options.idle_timeout: invalid duration")
				}
				idle = d.AsDuration()
			}
		}
	}
	return idle, proto, nil
}
