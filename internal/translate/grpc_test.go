package translate

import (
	"regexp"
	"slices"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"trellis.dev/trellis/internal/model"
)

func TestGRPCNames(t *testing.T) {
	k := model.Key{Namespace: "demo", Name: "echo"}
	if got, want := GRPCTargets(k, 8080, "cluster.local", "demo"), []string{"echo.demo.svc.cluster.local:8080", "echo.demo:8080", "echo:8080"}; !slices.Equal(got, want) {
		t.Errorf("GRPCTargets from the same namespace = %q, want %q", got, want)
	}
	if got, want := GRPCTargets(k, 8080, "cluster.local", "other"), []string{"echo.demo.svc.cluster.local:8080", "echo.demo:8080"}; !slices.Equal(got, want) {
		t.Errorf("GRPCTargets from another namespace = %q, want %q", got, want)
	}
	for addr, want := range map[string]string{
		"10.0.0.1": "grpc/server?xds.resource.listening_address=10.0.0.1:9090",
		"::":       "grpc/server?xds.resource.listening_address=[::]:9090",
	} {
		if got := GRPCServerListener(addr, 9090); got != want {
			t.Errorf("GRPCServerListener(%q) = %q, want %q", addr, got, want)
		}
	}
}

// TestGRPCPathMatches checks that the path matches a gRPC client gets
// select the calls the Gateway API match means, and use only the path
// specifiers gRPC implements.
func TestGRPCPathMatches(t *testing.T) {
	type call struct {
		path string
		want bool
	}
	for _, tc := range []struct {
		name  string
		http  *model.HTTPMatch
		grpc  *model.GRPCMatch
		calls []call
	}{
		{name: "http prefix", http: &model.HTTPMatch{PathType: model.PathPrefix, PathValue: "/pkg.Svc/"},
			calls: []call{{"/pkg.Svc/Get", true}, {"/pkg.Svc", true}, {"/pkg.SvcAdmin/Get", false}, {"/pkgXSvc/Get", false}}},
		{name: "http root prefix", http: &model.HTTPMatch{PathType: model.PathPrefix, PathValue: "/"},
			calls: []call{{"/pkg.Svc/Get", true}}},
		{name: "service and method", grpc: &model.GRPCMatch{Type: model.MatchExact, Service: "pkg.Svc", Method: "Get"},
			calls: []call{{"/pkg.Svc/Get", true}, {"/pkg.Svc/GetAll", false}, {"/pkg.Svc2/Get", false}}},
		{name: "service", grpc: &model.GRPCMatch{Type: model.MatchExact, Service: "pkg.Svc"},
			calls: []call{{"/pkg.Svc/Get", true}, {"/pkg.Svc2/Get", false}}},
		{name: "method", grpc: &model.GRPCMatch{Type: model.MatchExact, Method: "Get.x"},
			calls: []call{{"/pkg.Svc/Get.x", true}, {"/pkg.Svc/Getxx", false}, {"/a/b/Get.x", false}}},
		{name: "regex", grpc: &model.GRPCMatch{Type: model.MatchRegularExpression, Service: "pkg\\..*|other", Method: "Get|List"},
			calls: []call{{"/pkg.Svc/Get", true}, {"/other/List", true}, {"/pkg.Svc/Put", false}, {"/x/other/Get", false}}},
		{name: "regex method", grpc: &model.GRPCMatch{Type: model.MatchRegularExpression, Method: "G.t"},
			calls: []call{{"/pkg.Svc/Get", true}, {"/pkg.Svc/Put", false}}},
		{name: "any", grpc: &model.GRPCMatch{Type: model.MatchExact},
			calls: []call{{"/pkg.Svc/Get", true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &builder{proxyless: true}
			var rm *routev3.RouteMatch
			if tc.http != nil {
				rm = b.routeMatch(*tc.http)
			} else {
				rm = grpcRouteMatch(*tc.grpc)
			}
			if err := rm.ValidateAll(); err != nil {
				t.Fatal(err)
			}
			var match func(string) bool
			switch {
			case rm.GetPrefix() != "":
				match = func(p string) bool { return len(p) >= len(rm.GetPrefix()) && p[:len(rm.GetPrefix())] == rm.GetPrefix() }
			case rm.GetPath() != "":
				match = func(p string) bool { return p == rm.GetPath() }
			case rm.GetSafeRegex() != nil:
				// gRPC and Envoy match the whole path.
				re := regexp.MustCompile("^(?:" + rm.GetSafeRegex().GetRegex() + ")$")
				match = re.MatchString
			default:
				t.Fatalf("path specifier gRPC does not implement: %s", protojson.Format(rm))
			}
			for _, c := range tc.calls {
				if got := match(c.path); got != c.want {
					t.Errorf("%s matches %s: %v, want %v", protojson.Format(rm), c.path, got, c.want)
				}
			}
		})
	}
}
