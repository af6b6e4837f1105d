package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"trellis.dev/trellis/internal/xfcc"
)

const (
	// NextTimeout bounds the call to the next hop.
	NextTimeout = 5 * time.Second
	// ShutdownTimeout bounds the graceful shutdown of Run. net/http's
	// Shutdown waits up to 5 s for a connection on which no request has
	// arrived yet (a client may dial one ahead and keep it idle, as the
	// sidecar's pool does when the call it dialed for is canceled), so a
	// bound of 5 s fails the shutdown of an app that did nothing wrong.
	ShutdownTimeout = 10 * time.Second

	// MaxHops bounds the chain, so that an Options.Next that leads back to an
	// earlier service fails fast instead of calling itself until timeouts.
	MaxHops = 16

	// DepthHeader carries the number of hops a request has crossed so far.
	DepthHeader = "X-Trellis-Demo-Depth"
	// RequestIDHeader is passed on to the next hop.
	RequestIDHeader = "X-Request-Id"

	maxBody = 1 << 20 // of a next hop's answer
)

// Log keys.
const (
	keyService   = "service"
	keyVersion   = "version"
	keyWorkload  = "workload"
	keyAddr      = "addr"
	keyNext      = "next"
	keyRequestID = "request_id"
	keyCaller    = "caller"
	keyStatus    = "status"
	keyError     = "error"
)

// Options configure one instance of the demo application.
type Options struct {
	Service, Version, Namespace, Workload string // e.g. "catalog", "v1", "demo", "catalog-1"

	// Listen is the host:port to serve plain HTTP on.
	Listen string
	// Next is the base URL of the next hop, usually the app's own sidecar's
	// outbound listener; "" for the last service.
	Next string
	// Logger receives the app's logs; nil discards them.
	Logger *slog.Logger
}

// Hop is what one service saw of a request.
type Hop struct {
	Service   string `json:"service"`
	Version   string `json:"version,omitempty"`
	Workload  string `json:"workload,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	// Caller is the SPIFFE ID the service's sidecar verified: the first URI
	// of the first x-forwarded-client-cert element; "" if there is none.
	Caller string `json:"caller"`
	// Callee is the sidecar's own identity: the first By of that element.
	Callee string `json:"callee,omitempty"`
	// XFCC is the raw x-forwarded-client-cert header, "" if absent.
	XFCC string `json:"xfcc"`
	// XFCCError says why XFCC did not parse.
	XFCCError string `json:"xfccError,omitempty"`
}

// Chain is the answer of a service: its own hop first, then those of the
// services after it. Error says why the chain stops early.
type Chain struct {
	Hops  []Hop  `json:"hops"`
	Error string `json:"error,omitempty"`
}

func (o Options) validate() error {
	if o.Service == "" {
		return errors.New("demo app: no service name; set Options.Service")
	}
	if o.Listen == "" {
		return fmt.Errorf("demo app %s: no listen address; set Options.Listen to host:port", o.Service)
	}
	if o.Next != "" {
		u, err := url.Parse(o.Next)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("demo app %s: next hop %q is not an http:// URL; set Options.Next to the sidecar's outbound listener, e.g. http://127.0.0.1:15001", o.Service, o.Next)
		}
	}
	return nil
}

func (o Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

// Run serves the app on opts.Listen until ctx is done, then shuts down
// gracefully, waiting at most ShutdownTimeout for requests in flight.
func Run(ctx context.Context, opts Options) error {
	if err := opts.validate(); err != nil {
		return err
	}
	log := opts.logger()
	client := newClient()
	defer client.CloseIdleConnections()

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", opts.Listen)
	if err != nil {
		return fmt.Errorf("demo app %s: %w", opts.Service, err)
	}
	srv := &http.Server{
		Handler:           Handler(opts, client),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("demo app serving", keyService, opts.Service, keyVersion, opts.Version,
		keyWorkload, opts.Workload, keyAddr, ln.Addr().String(), keyNext, opts.Next)

	select {
	case err := <-served:
		return fmt.Errorf("demo app %s: %w", opts.Service, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	err = srv.Shutdown(sctx)
	<-served // Serve returns as soon as Shutdown starts
	if err != nil {
		srv.Close()
		return fmt.Errorf("demo app %s: shutdown: %w", opts.Service, err)
	}
	return nil
}

// newClient returns the client an app calls its next hop with. It ignores
// HTTP_PROXY and the like: the next hop is the app's own sidecar.
func newClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	return &http.Client{Transport: t, Timeout: NextTimeout}
}

// Handler returns the app's HTTP handler. client calls the next hop; if nil,
// Handler uses its own, which ignores proxy environment variables.
func Handler(opts Options, client *http.Client) http.Handler {
	if client == nil {
		client = newClient()
	}
	a := &app{opts: opts, client: client, log: opts.logger()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/", a.serveChain)
	return mux
}

type app struct {
	opts   Options
	client *http.Client
	log    *slog.Logger
}

func (a *app) serveChain(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	reqID := r.Header.Get(RequestIDHeader)
	hop := a.hop(r)
	chain := Chain{Hops: []Hop{hop}}
	if a.opts.Next != "" {
		next, err := a.callNext(r)
		chain.Hops = append(chain.Hops, next.Hops...)
		chain.Error = next.Error
		if err != nil {
			chain.Error = err.Error()
		}
	}
	status := http.StatusOK
	if chain.Error != "" {
		status = http.StatusBadGateway
	}
	level := slog.LevelDebug
	if status != http.StatusOK {
		level = slog.LevelWarn
	}
	a.log.Log(r.Context(), level, "demo request", keyService, a.opts.Service, keyRequestID, reqID,
		keyCaller, hop.Caller, keyStatus, status, keyError, chain.Error)

	if reqID != "" {
		w.Header().Set(RequestIDHeader, reqID)
	}
	if wantsJSON(r) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(chain)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	io.WriteString(w, chain.Text())
}

// hop describes this service and the caller its sidecar verified.
func (a *app) hop(r *http.Request) Hop {
	h := Hop{
		Service:   a.opts.Service,
		Version:   a.opts.Version,
		Workload:  a.opts.Workload,
		Namespace: a.opts.Namespace,
		XFCC:      strings.Join(r.Header.Values(xfcc.Header), ","),
	}
	if h.XFCC == "" {
		return h
	}
	elems, err := xfcc.Parse(h.XFCC)
	if err != nil {
		h.XFCCError = err.Error()
		return h
	}
	if len(elems) > 0 {
		if uris := elems[0].URI; len(uris) > 0 {
			h.Caller = uris[0]
		}
		if by := elems[0].By; len(by) > 0 {
			h.Callee = by[0]
		}
	}
	return h
}

// callNext asks the next hop for its chain. A chain with Error set is a
// failure further on; an error means the next hop gave no chain at all.
func (a *app) callNext(r *http.Request) (Chain, error) {
	target := strings.TrimSuffix(a.opts.Next, "/") + "/"
	depth, _ := strconv.Atoi(r.Header.Get(DepthHeader))
	if depth < 0 {
		depth = 0
	}
	depth++
	if depth >= MaxHops {
		return Chain{}, fmt.Errorf("%s did not call %s: the request already crossed %d hops; does a next hop lead back to an earlier service?", a.opts.Service, target, depth)
	}

	ctx, cancel := context.WithTimeout(r.Context(), NextTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return Chain{}, fmt.Errorf("%s: next hop %s: %w", a.opts.Service, target, err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set(DepthHeader, strconv.Itoa(depth))
	if id := r.Header.Get(RequestIDHeader); id != "" {
		req.Header.Set(RequestIDHeader, id)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return Chain{}, fmt.Errorf("%s could not reach its next hop: %w", a.opts.Service, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return Chain{}, fmt.Errorf("%s: reading the answer of %s: %w", a.opts.Service, target, err)
	}
	var next Chain
	jsonErr := json.Unmarshal(body, &next)
	if jsonErr == nil && len(next.Hops) > 0 {
		if resp.StatusCode != http.StatusOK && next.Error == "" {
			next.Error = fmt.Sprintf("%s answered %s", target, resp.Status)
		}
		return next, nil
	}
	if resp.StatusCode != http.StatusOK {
		return Chain{}, fmt.Errorf("%s: next hop %s answered %s: %s", a.opts.Service, target, resp.Status, snippet(body))
	}
	if jsonErr != nil {
		return Chain{}, fmt.Errorf("%s: next hop %s did not answer with a demo chain: %v", a.opts.Service, target, jsonErr)
	}
	return Chain{}, fmt.Errorf("%s: next hop %s answered with no hops", a.opts.Service, target)
}

func snippet(b []byte) string {
	const limit = 200
	s := strings.TrimSpace(string(b))
	if len(s) > limit {
		s = s[:limit] + "..."
	}
	if s == "" {
		return "(empty body)"
	}
	return strconv.Quote(s)
}

func wantsJSON(r *http.Request) bool {
	if r.URL.Query().Get("format") == "json" {
		return true
	}
	for _, v := range r.Header.Values("Accept") {
		if strings.Contains(v, "application/json") {
			return true
		}
	}
	return false
}

// Text renders the chain for people reading curl's output.
func (c Chain) Text() string {
	var b strings.Builder
	n := len(c.Hops)
	unverified := 0
	for _, h := range c.Hops {
		if h.Caller == "" {
			unverified++
		}
	}
	noun := "services"
	if n == 1 {
		noun = "service"
	}
	fmt.Fprintf(&b, "Trellis demo: the request crossed %d %s", n, noun)
	if c.Error != "" {
		b.WriteString(" and then failed")
	}
	switch {
	case n == 0:
	case unverified == 0:
		b.WriteString(", each hop over mTLS")
	case unverified == n:
		b.WriteString("; no hop had a verified caller")
	default:
		fmt.Fprintf(&b, "; %d of %d hops had no verified caller", unverified, n)
	}
	b.WriteByte('\n')
	for i, h := range c.Hops {
		fmt.Fprintf(&b, "  %d. %s\n", i+1, h.name())
		switch {
		case h.Caller != "":
			fmt.Fprintf(&b, "     caller verified by %s's sidecar: %s\n", h.Service, h.Caller)
		case h.XFCCError != "":
			fmt.Fprintf(&b, "     caller: unknown, x-forwarded-client-cert did not parse: %s\n", h.XFCCError)
			fmt.Fprintf(&b, "     x-forwarded-client-cert: %q\n", h.XFCC)
		case h.XFCC == "":
			b.WriteString("     caller: not verified (no x-forwarded-client-cert)\n")
		default:
			fmt.Fprintf(&b, "     caller: not verified (x-forwarded-client-cert names no URI: %q)\n", h.XFCC)
		}
	}
	if c.Error != "" {
		fmt.Fprintf(&b, "  error: %s\n", c.Error)
	}
	return b.String()
}

// name is "catalog v1 (demo/catalog-1)", leaving out what is unknown.
func (h Hop) name() string {
	s := h.Service
	if h.Version != "" {
		s += " " + h.Version
	}
	where := h.Workload
	if h.Namespace != "" && where != "" {
		where = h.Namespace + "/" + where
	} else if where == "" {
		where = h.Namespace
	}
	if where != "" {
		s += " (" + where + ")"
	}
	return s
}
