package nodemeta

import (
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/structpb"
)

func TestRoundTrip(t *testing.T) {
	for _, m := range []*Metadata{
		{
			Kind: KindSidecar, Name: "web-1", Namespace: "demo", ServiceAccount: "web",
			Address: "10.0.0.7", Labels: map[string]string{"app": "web"},
			Ports:     []Port{{Name: "http", Port: 8080, Protocol: "HTTP"}},
			MeshPort:  15008,
			Upstreams: []Upstream{{Service: "catalog", Port: 80, LocalPort: 9001}},
		},
		{
			Kind: KindGRPC, Name: "ratings-1", Namespace: "demo", ServiceAccount: "ratings",
			Address: "10.0.0.8", Labels: map[string]string{"app": "ratings"},
			Ports:     []Port{{Name: "grpc", Port: 9090}},
			Upstreams: []Upstream{{Service: "reviews", Namespace: "shop", Port: 80}},
		},
	} {
		s, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(s)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, m)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	for name, tc := range map[string]struct {
		fields map[string]any
		want   string
	}{
		"no trellis field": {map[string]any{}, `no "trellis" field`},
		"unknown field":    {map[string]any{Field: map[string]any{"kind": "sidecar", "bogus": 1}}, `unknown field "bogus"`},
		"missing identity": {map[string]any{Field: map[string]any{"kind": "sidecar", "address": "10.0.0.1"}}, "serviceAccount: must not be empty"},
		"bad kind":         {map[string]any{Field: map[string]any{"kind": "router", "name": "a", "namespace": "b", "serviceAccount": "c", "address": "10.0.0.1"}}, `kind: "router"`},
		"bad gateway":      {map[string]any{Field: map[string]any{"kind": "gateway", "gateway": "nope", "name": "a", "namespace": "b", "serviceAccount": "c", "address": "10.0.0.1"}}, `gateway: "nope"`},
		"bad address":      {map[string]any{Field: map[string]any{"kind": "sidecar", "name": "a", "namespace": "b", "serviceAccount": "c", "address": "host"}}, `address: "host"`},
		"grpc with mesh port": {map[string]any{Field: map[string]any{"kind": "grpc", "name": "a", "namespace": "b", "serviceAccount": "c", "address": "10.0.0.1", "meshPort": 15008}},
			`meshPort: a gRPC application (kind "grpc") has no sidecar`},
		"grpc with local port": {map[string]any{Field: map[string]any{"kind": "grpc", "name": "a", "namespace": "b", "serviceAccount": "c", "address": "10.0.0.1",
			"upstreams": []any{map[string]any{"service": "x", "port": 80, "localPort": 9000}}}}, "upstreams[0].localPort: a gRPC application dials xds:/// targets"},
		"sidecar without local port": {map[string]any{Field: map[string]any{"kind": "sidecar", "name": "a", "namespace": "b", "serviceAccount": "c", "address": "10.0.0.1",
			"upstreams": []any{map[string]any{"service": "x", "port": 80}}}}, "upstreams[0].localPort: 0 is not a port number"},
	} {
		t.Run(name, func(t *testing.T) {
			s, err := structpb.NewStruct(tc.fields)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Decode(s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Decode error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// FuzzDecode feeds arbitrary node metadata, as a proxy could send it, to
// Decode: it must never panic, and what it accepts must survive a round
// trip.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"trellis":{"kind":"sidecar","name":"a","namespace":"b","serviceAccount":"c","address":"10.0.0.1","ports":[{"port":80}]}}`))
	f.Add([]byte(`{"trellis":{"kind":"gateway","gateway":"ns/gw","name":"gw","namespace":"ns","serviceAccount":"gw","address":"::1"}}`))
	f.Add([]byte(`{"trellis":{"upstreams":[{"service":"x","port":1,"localPort":1},{"service":"y","port":2,"localPort":1}]}}`))
	f.Add([]byte(`{"trellis":{"kind":"grpc","name":"a","namespace":"b","serviceAccount":"c","address":"10.0.0.1","ports":[{"port":9090}],"upstreams":[{"service":"x","port":80}]}}`))
	f.Add([]byte(`{"trellis":{"kind":"sidecar","name":"a","namespace":"b","serviceAccount":"c","address":"10.0.0.1","network":"west-1"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var s structpb.Struct
		if err := s.UnmarshalJSON(data); err != nil {
			return
		}
		m, err := Decode(&s)
		if err != nil {
			return
		}
		enc, err := m.Encode()
		if err != nil {
			t.Fatalf("Encode of a decoded registration: %v", err)
		}
		again, err := Decode(enc)
		if err != nil {
			t.Fatalf("Decode(Encode(m)): %v", err)
		}
		if !reflect.DeepEqual(again, m) {
			t.Fatalf("round trip changed the registration:\n%+v\n%+v", m, again)
		}
	})
}

// TestNetwork: a network name is a label value.
func TestNetwork(t *testing.T) {
	for name, ok := range map[string]bool{"west": true, "eu.west_1-a": true, "-west": false, "west/1": false, strings.Repeat("w", 64): false} {
		m := Metadata{Kind: KindSidecar, Name: "a", Namespace: "b", ServiceAccount: "c", Address: "10.0.0.1", Network: name}
		if err := m.Validate(); (err == nil) != ok {
			t.Errorf("network %q: %v", name, err)
		}
	}
}
