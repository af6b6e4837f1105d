package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	"trellis.dev/trellis/internal/control"
	"trellis.dev/trellis/internal/controlapi"
	"trellis.dev/trellis/internal/netnstest"
	"trellis.dev/trellis/internal/proxycli"
)

// Tests with transparent capture run each part (control plane, apps,
// proxies, one-shot clients) as a process of this test binary in a
// network namespace of its own: a socket belongs to the namespace of the
// thread that creates it, which goroutines cannot be pinned to safely.
// TestMain runs the part named by roleEnv instead of the tests.

// roleEnv names the part a re-executed test binary plays.
const roleEnv = "TRELLIS_E2E_ROLE"

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := runRole(ctx, role, os.Args[1:])
		stop()
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", role, err)
			os.Exit(3)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runRole runs one part:
//
//	control DATADIR XDS API YAMLFILE READYFILE   a control plane, with YAMLFILE applied
//	proxy ARGS...                                trellis-proxy (also init)
//	token API NS SA FILE                         a join token made through the API, written to FILE
//	app HTTPPORT GRPCPORT BANNERPORT...          an HTTP echo server, a gRPC stream server and server-first TCP servers
//	get URL                                      prints "STATUS BODY"
//	banner ADDR                                  prints the first line the server sends
//	grpc ADDR                                    a bidirectional stream; prints its trailer
//	upgrade ADDR                                 an HTTP/1.1 Upgrade; prints the echo of "ping"
func runRole(ctx context.Context, role string, args []string) error {
	switch role {
	case "control":
		return roleControl(ctx, args)
	case "proxy":
		return proxycli.Run(ctx, args, os.Stdout, os.Stderr)
	case "token":
		return roleToken(ctx, args)
	case "app":
		return roleApp(ctx, args)
	case "get":
		c := &http.Client{Timeout: 10 * time.Second}
		resp, err := c.Get(args[0])
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		fmt.Printf("%d %s", resp.StatusCode, body)
		return nil
	case "grpc":
		return roleGRPCClient(ctx, args[0])
	case "upgrade":
		conn, err := net.DialTimeout("tcp", args[0], 10*time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(conn)
		fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			return fmt.Errorf("status %s", resp.Status)
		}
		fmt.Fprint(conn, "ping\n")
		line, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		fmt.Print(line)
		return nil
	case "banner":
		conn, err := net.DialTimeout("tcp", args[0], 10*time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil {
			return fmt.Errorf("read banner: %w (got %q)", err, line)
		}
		fmt.Print(line)
		return nil
	}
	if f := egressRoles[role]; f != nil {
		return f(ctx, args)
	}
	return fmt.Errorf("unknown role %q", role)
}

func roleControl(ctx context.Context, args []string) error {
	dataDir, xdsAddr, apiAddr, yamlFile, readyFile := args[0], args[1], args[2], args[3], args[4]
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- control.Run(ctx, control.Options{DataDir: dataDir, XDSAddress: xdsAddr, DebugAddress: apiAddr,
			RegistryOnly: os.Getenv(registryOnlyEnv) != "",
			Ready:        func(_, _ net.Addr) { close(ready) }})
	}()
	select {
	case <-ready:
	case err := <-done:
		return err
	}
	yaml, err := os.ReadFile(yamlFile)
	if err != nil {
		return err
	}
	c, err := controlapi.NewClient(apiAddr)
	if err != nil {
		return err
	}
	if _, err := c.Apply(ctx, controlapi.ApplyRequest{Files: []controlapi.File{{Name: yamlFile, Content: string(yaml)}}}); err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	if err := os.WriteFile(readyFile, []byte("ready"), 0o644); err != nil {
		return err
	}
	return <-done
}

// roleApp serves HTTP on the first port, answering with what it saw of
// the caller (JSON: the x-forwarded-client-cert and x-via headers), and a
// server-first protocol, SMTP-like, on the others: the server greets
// first, the client sends nothing until it has read the greeting.
func roleApp(ctx context.Context, args []string) error {
	var lns, grpcLns []net.Listener
	for _, p := range args {
		// "grpc:PORT" serves gRPC there too.
		port, isGRPC := strings.CutPrefix(p, "grpc:")
		ln, err := net.Listen("tcp", ":"+port)
		if err != nil {
			return err
		}
		if isGRPC {
			grpcLns = append(grpcLns, ln)
			continue
		}
		lns = append(lns, ln)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "echo" {
			// After 101 the connection echoes lines.
			conn, rw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			fmt.Fprint(rw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
			rw.Flush()
			for {
				line, err := rw.ReadString('\n')
				if err != nil {
					return
				}
				fmt.Fprint(rw, "echo: "+line)
				rw.Flush()
			}
		}
		json.NewEncoder(w).Encode(map[string]string{"xfcc": r.Header.Get("X-Forwarded-Client-Cert"), "via": r.Header.Get("X-Via")})
	}), ReadHeaderTimeout: 10 * time.Second}
	gs := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(gs, streamServer{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = srv.Serve(lns[0]) }()
	go func() { defer wg.Done(); _ = gs.Serve(lns[1]) }()
	for _, ln := range grpcLns {
		wg.Add(1)
		go func() { defer wg.Done(); _ = gs.Serve(ln) }()
	}
	for _, ln := range lns[2:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					fmt.Fprintf(c, "220 banner on %s\r\n", ln.Addr())
					_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
					_, _ = bufio.NewReader(c).ReadString('\n')
				}()
			}
		}()
	}
	<-ctx.Done()
	_ = srv.Close()
	gs.Stop()
	for _, ln := range lns[2:] {
		ln.Close()
	}
	wg.Wait()
	return nil
}

// streamServer answers each message of a bidirectional stream, and ends
// the stream with a trailer.
type streamServer struct {
	testgrpc.UnimplementedTestServiceServer
}

func (streamServer) FullDuplexCall(s testgrpc.TestService_FullDuplexCallServer) error {
	s.SetTrailer(metadata.Pairs("x-stream-end", "clean"))
	for {
		req, err := s.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		size := req.GetResponseParameters()[0].GetSize()
		if err := s.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: make([]byte, size)}}); err != nil {
			return err
		}
	}
}

// roleGRPCClient runs a bidirectional stream, each message answered
// before the next is sent, and prints the stream's trailer.
func roleGRPCClient(ctx context.Context, addr string) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	stream, err := testgrpc.NewTestServiceClient(conn).FullDuplexCall(ctx)
	if err != nil {
		return err
	}
	for _, size := range []int32{1, 1000, 10} {
		if err := stream.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: size}}}); err != nil {
			return err
		}
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		if len(resp.GetPayload().GetBody()) != int(size) {
			return fmt.Errorf("got %d bytes, want %d", len(resp.GetPayload().GetBody()), size)
		}
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}
	if _, err := stream.Recv(); err != io.EOF {
		return fmt.Errorf("end of stream: %v", err)
	}
	fmt.Printf("trailer=%s", strings.Join(stream.Trailer().Get("x-stream-end"), ","))
	return nil
}

// netns runs the test binary's roles in network namespaces
// (netnstest.Net).
type netns struct {
	*netnstest.Net
	t      *testing.T
	subnet string // "198.18.N"
}

func newNetns(t *testing.T) *netns {
	t.Helper()
	n := netnstest.New(t)
	return &netns{Net: n, t: t, subnet: n.Subnet}
}

// add creates a namespace on the bridge and returns its name and IPv4
// address.
func (n *netns) add(name string) (ns, addr string) {
	n.t.Helper()
	return n.Add(name)
}

// addr6 is the IPv6 address of the k-th namespace added.
func (n *netns) addr6(k int) string { return n.Addr6(k) }

// start runs a role in ns until the test ends.
func (n *netns) start(ns, role string, args ...string) {
	n.t.Helper()
	cmd := n.command(ns, role, args...)
	if os.Getenv("TRELLIS_TEST_LOGS") != "" {
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	}
	n.Start(cmd)
}

// command runs the test binary as role in ns.
func (n *netns) command(ns, role string, args ...string) *exec.Cmd {
	return n.Command(ns, []string{roleEnv + "=" + role}, append([]string{os.Args[0]}, args...)...)
}

// run runs a one-shot role in ns and returns its output.
// roleToken makes a join token through the control plane's API at
// args[0] for namespace args[1] and service account args[2], and writes it
// to the file args[3].
func roleToken(ctx context.Context, args []string) error {
	if len(args) != 4 {
		return errors.New("token: want API NAMESPACE SERVICE_ACCOUNT FILE")
	}
	c, err := controlapi.NewClient(args[0])
	if err != nil {
		return err
	}
	made, err := c.CreateTokens(ctx, []controlapi.TokenSpec{{Namespace: args[1], ServiceAccount: args[2], TTLSeconds: 600}})
	if err != nil {
		return err
	}
	return os.WriteFile(args[3], []byte(made[0].Token+"\n"), 0o600)
}

func (n *netns) run(ns, role string, args ...string) (string, error) {
	out, err := n.command(ns, role, args...).CombinedOutput()
	return string(out), err
}

// waitFile waits for a file the control role writes once it is ready.
func waitFile(t *testing.T, path string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(path); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s did not appear in %s", path, timeout)
}

var errNotYet = errors.New("not yet")
