package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"trellis.dev/trellis/internal/proxy/xdsclient"
)

// streamServer answers a bidirectional stream message by message, and
// ends it with a trailer.
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

// TestGRPCStreaming sends a bidirectional gRPC stream through a proxy
// whose client side is h2c and whose cluster speaks HTTP/2 (h2c) to the
// server: each message is answered before the next is sent, and the
// trailers arrive.
func TestGRPCStreaming(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(srv, streamServer{})
	go srv.Serve(ln)
	defer srv.Stop()

	h := newHarness(t, routes(`{"match":{"prefix":"/"},"route":{"cluster":"g","timeout":"0s"}}`), map[string][]string{"g": {ln.Addr().String()}}, false)
	c := staticCluster(t, "g", ln.Addr().String())
	c.TypedExtensionProtocolOptions = map[string]*anypb.Any{HTTPProtocolOptionsKey: mustAny(t, &upstreamhttpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}}}}})}
	if err := h.p.Apply(xdsclient.ClusterType, map[string]proto.Message{"g": c}); err != nil {
		t.Fatal(err)
	}

	conn, err := grpc.NewClient(h.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := testgrpc.NewTestServiceClient(conn).FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int32{1, 10, 100} {
		if err := stream.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: size}}}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("message of %d bytes: %v", size, err)
		}
		if got := len(resp.GetPayload().GetBody()); got != int(size) {
			t.Errorf("got %d bytes, want %d", got, size)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("end of stream: %v", err)
	}
	if got := strings.Join(stream.Trailer().Get("x-stream-end"), ","); got != "clean" {
		t.Errorf("trailer x-stream-end = %q, want clean", got)
	}
}

// TestDownstreamProtocolCluster: a cluster with use_downstream_protocol_config
// (ports whose protocol is detected) sends each request upstream in the
// HTTP version it came in with.
func TestDownstreamProtocolCluster(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &protos, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	})}
	go srv.Serve(ln)
	defer srv.Close()

	h := newHarness(t, routes(`{"match":{"prefix":"/"},"route":{"cluster":"g","timeout":"0s"}}`), map[string][]string{"g": {ln.Addr().String()}}, false)
	c := staticCluster(t, "g", ln.Addr().String())
	c.TypedExtensionProtocolOptions = map[string]*anypb.Any{HTTPProtocolOptionsKey: mustAny(t, &upstreamhttpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_UseDownstreamProtocolConfig{
			UseDownstreamProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_UseDownstreamHttpConfig{
				HttpProtocolOptions: &corev3.Http1ProtocolOptions{}, Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}}}})}
	if err := h.p.Apply(xdsclient.ClusterType, map[string]proto.Message{"g": c}); err != nil {
		t.Fatal(err)
	}
	var h2c http.Protocols
	h2c.SetUnencryptedHTTP2(true)
	for name, client := range map[string]*http.Client{
		"HTTP/1.1": {Timeout: 10 * time.Second},
		"HTTP/2.0": {Timeout: 10 * time.Second, Transport: &http.Transport{Protocols: &h2c}},
	} {
		resp, err := client.Get("http://" + h.addr + "/")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.Proto != name || string(body) != name {
			t.Errorf("a request in %s reached the proxy in %s and the server in %q", name, resp.Proto, body)
		}
	}
}
