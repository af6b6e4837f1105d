package resource

import (
	"errors"
	"testing"
)

func TestValidateMesh(t *testing.T) {
	objs, err := Decode("testdata/mesh.yaml", mustRead(t, "testdata/mesh.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		Default(o, "default")
		if err := Validate(o); err != nil {
			t.Errorf("%s: %v", o.Ref(), err)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   string
		want []string // nil: valid
	}{{
		name: "names",
		in: `apiVersion: v1
kind: Service
metadata:
  name: 1api
  namespace: Demo
  labels:
    app: "-x"
    "a/b/c": x
  annotations:
    "example.com/ok": x
    "bad key!": x
spec:
  ports: [{port: 80}]
`,
		want: []string{
			`t.yaml:4: Service Demo/1api: metadata.name: invalid name "1api": must consist of lowercase letters, digits and '-', start with a letter, end with a letter or digit, and be at most 63 characters (an RFC 1035 label)`,
			`t.yaml:5: Service Demo/1api: metadata.namespace: invalid name "Demo": must consist of lowercase letters, digits and '-', start and end with a letter or digit, and be at most 63 characters (an RFC 1123 label)`,
			`t.yaml:8: Service Demo/1api: metadata.labels[a/b/c]: invalid label key "a/b/c": must be a name of letters, digits, '-', '_' and '.' (at most 63) with an optional DNS subdomain prefix and '/', e.g. app.kubernetes.io/name`,
			`t.yaml:7: Service Demo/1api: metadata.labels[app]: invalid label value "-x": must be empty or at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit`,
			`t.yaml:11: Service Demo/1api: metadata.annotations[bad key!]: invalid annotation key "bad key!": must be a name of letters, digits, '-', '_' and '.' with an optional DNS subdomain prefix and '/', e.g. example.com/my-key`,
		},
	}, {
		name: "name required",
		in:   "apiVersion: trellis.dev/v1alpha1\nkind: MTLSPolicy\nmetadata: {namespace: demo}\nspec: {mode: STRICT}\n",
		want: []string{`t.yaml:3: MTLSPolicy: metadata.name: required`},
	}, {
		name: "name without metadata",
		in:   "apiVersion: trellis.dev/v1alpha1\nkind: MTLSPolicy\nspec: {mode: STRICT}\n",
		want: []string{`t.yaml:1: MTLSPolicy: metadata.name: required`},
	}, {
		name: "Service ports",
		in: `apiVersion: v1
kind: Service
metadata: {name: api, namespace: demo}
spec:
  clusterIP: 10.0.0.300
  ports:
  - port: 0
  - name: http
    port: 80
    targetPort: 70000
  - name: http
    port: 80
    protocol: TCP
    targetPort: HTTP
  - name: dns
    port: 80
    protocol: UDP
  - name: x
    port: 81
    protocol: ICMP
`,
		want: []string{
			`t.yaml:5: Service demo/api: spec.clusterIP: "10.0.0.300" is neither an IP address nor "None"`,
			`t.yaml:7: Service demo/api: spec.ports[0].name: required when a service has more than one port`,
			`t.yaml:7: Service demo/api: spec.ports[0].port: port 0 is out of range 1-65535`,
			`t.yaml:10: Service demo/api: spec.ports[1].targetPort: port 70000 is out of range 1-65535`,
			`t.yaml:11: Service demo/api: spec.ports[2].name: duplicate port name "http" (also spec.ports[1])`,
			`t.yaml:12: Service demo/api: spec.ports[2].port: duplicate port 80/TCP (also spec.ports[1])`,
			`t.yaml:14: Service demo/api: spec.ports[2].targetPort: invalid port name "HTTP": must be at most 15 lowercase letters, digits and single '-', with at least one letter, not starting or ending with '-' (an IANA service name)`,
			`t.yaml:20: Service demo/api: spec.ports[4].protocol: unsupported value "ICMP"; one of TCP, UDP, SCTP`,
		},
	}, {
		name: "Service without ports",
		in:   "apiVersion: v1\nkind: Service\nmetadata: {name: api}\nspec: {selector: {app: api}}\n",
		want: []string{`t.yaml:4: Service default/api: spec.ports: required: at least one port (only headless and ExternalName services may have none)`},
	}, {
		name: "headless Service without ports",
		in:   "apiVersion: v1\nkind: Service\nmetadata: {name: db}\nspec: {clusterIP: None}\n",
	}, {
		name: "Gateway",
		in: `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  listeners:
  - name: http
    port: 80
    protocol: HTTP
    hostname: "*.example.com"
  - name: http
    port: 0
    protocol: ""
    hostname: "foo.*.com"
  - name: Bad_Name
    port: 443
    protocol: example.com/quic
    hostname: 10.0.0.1
`,
		want: []string{
			`t.yaml:4: Gateway infra/gw: spec.gatewayClassName: required`,
			`t.yaml:13: Gateway infra/gw: spec.listeners[1].hostname: invalid hostname "foo.*.com": a wildcard is allowed only as the whole leftmost label (*.example.com)`,
			`t.yaml:11: Gateway infra/gw: spec.listeners[1].port: port 0 is out of range 1-65535`,
			`t.yaml:12: Gateway infra/gw: spec.listeners[1].protocol: required: HTTP, HTTPS, TLS, TCP, UDP or a domain-prefixed protocol (example.com/proto)`,
			`t.yaml:10: Gateway infra/gw: spec.listeners[1].name: duplicate name "http" (also spec.listeners[0])`,
			`t.yaml:14: Gateway infra/gw: spec.listeners[2].name: invalid name "Bad_Name": must consist of lowercase letters, digits, '-' and '.', start and end with a letter or digit, and be at most 253 characters (an RFC 1123 subdomain)`,
			`t.yaml:17: Gateway infra/gw: spec.listeners[2].hostname: "10.0.0.1" is an IP address; use a hostname`,
		},
	}, {
		name: "Gateway without listeners",
		in:   "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec: {gatewayClassName: trellis}\n",
		want: []string{`t.yaml:4: Gateway default/gw: spec.listeners: required: at least one listener`},
	}, {
		name: "HTTPRoute",
		in: `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: demo}
spec:
  hostnames: ["*", "Shop.example.com"]
  rules:
  - matches:
    - path: {type: PathPrefix, value: api}
      method: FETCH
      headers:
      - name: "x header"
        value: a
      - name: x-re
        type: RegularExpression
        value: "a("
    - path: {type: RegularExpression, value: "/(a"}
    backendRefs:
    - name: api
    - name: api
      port: 8080
      weight: 1000001
    - name: bucket
      group: storage.example.com
      kind: Bucket
    timeouts: {request: 10 seconds}
`,
		want: []string{
			`t.yaml:4: HTTPRoute demo/web: spec.parentRefs: required: at least one Gateway or Service to attach to`,
			`t.yaml:5: HTTPRoute demo/web: spec.hostnames[0]: invalid hostname "*": a wildcard is allowed only as the whole leftmost label (*.example.com)`,
			`t.yaml:5: HTTPRoute demo/web: spec.hostnames[1]: invalid hostname "Shop.example.com": must be lowercase letters, digits, '-' and '.' (an RFC 1123 subdomain), optionally starting with "*."`,
			`t.yaml:8: HTTPRoute demo/web: spec.rules[0].matches[0].path.value: path "api" must start with "/"`,
			`t.yaml:9: HTTPRoute demo/web: spec.rules[0].matches[0].method: unsupported value "FETCH"; one of GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH`,
			"t.yaml:11: HTTPRoute demo/web: spec.rules[0].matches[0].headers[0].name: invalid header name \"x header\": must be an HTTP token (letters, digits and !#$%&'*+-.^_`|~)",
			"t.yaml:15: HTTPRoute demo/web: spec.rules[0].matches[0].headers[1].value: invalid regular expression: error parsing regexp: missing closing ): `a(`",
			"t.yaml:16: HTTPRoute demo/web: spec.rules[0].matches[1].path.value: invalid regular expression: error parsing regexp: missing closing ): `/(a`",
			`t.yaml:18: HTTPRoute demo/web: spec.rules[0].backendRefs[0].port: required for a Service backend`,
			`t.yaml:21: HTTPRoute demo/web: spec.rules[0].backendRefs[1].weight: weight 1000001 is out of range 0-1000000`,
			`t.yaml:25: HTTPRoute demo/web: spec.rules[0].timeouts.request: invalid duration "10 seconds": use up to four number-unit pairs with units h, m, s, ms, e.g. 1h30m or 500ms`,
		},
	}, {
		name: "HTTPRoute parentRefs",
		in: `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: demo}
spec:
  parentRefs:
  - name: ""
  - {name: gw, namespace: Infra, sectionName: "-x", port: 65536}
`,
		want: []string{
			`t.yaml:6: HTTPRoute demo/web: spec.parentRefs[0].name: required`,
			`t.yaml:7: HTTPRoute demo/web: spec.parentRefs[1].namespace: invalid name "Infra": must consist of lowercase letters, digits and '-', start and end with a letter or digit, and be at most 63 characters (an RFC 1123 label)`,
			`t.yaml:7: HTTPRoute demo/web: spec.parentRefs[1].sectionName: invalid name "-x": must consist of lowercase letters, digits, '-' and '.', start and end with a letter or digit, and be at most 253 characters (an RFC 1123 subdomain)`,
			`t.yaml:7: HTTPRoute demo/web: spec.parentRefs[1].port: port 65536 is out of range 1-65535`,
		},
	}, {
		name: "GRPCRoute",
		in: `apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: g}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches:
    - method: {type: Exact}
    - method: {service: "hello world", method: "Say-Hello"}
    backendRefs: [{name: greeter}]
`,
		want: []string{
			`t.yaml:8: GRPCRoute default/g: spec.rules[0].matches[0].method: set service, method or both`,
			`t.yaml:9: GRPCRoute default/g: spec.rules[0].matches[1].method.service: invalid gRPC service "hello world": dotted identifiers, e.g. helloworld.Greeter`,
			`t.yaml:9: GRPCRoute default/g: spec.rules[0].matches[1].method.method: invalid gRPC method "Say-Hello": an identifier, e.g. SayHello`,
			`t.yaml:10: GRPCRoute default/g: spec.rules[0].backendRefs[0].port: required for a Service backend`,
		},
	}, {
		name: "TLSRoute",
		in: `apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {name: t}
spec:
  parentRefs: [{name: gw}]
  rules: [{}, {}]
`,
		want: []string{
			`t.yaml:4: TLSRoute default/t: spec.hostnames: must have at least one hostname`,
			`t.yaml:6: TLSRoute default/t: spec.rules: must have exactly one rule, got 2`,
			`t.yaml:6: TLSRoute default/t: spec.rules[0].backendRefs: required: at least one backend`,
			`t.yaml:6: TLSRoute default/t: spec.rules[1].backendRefs: required: at least one backend`,
		},
	}, {
		name: "ReferenceGrant",
		in: `apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: g}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: ""}]
  to: []
`,
		want: []string{
			`t.yaml:6: ReferenceGrant default/g: spec.to: required: at least one entry`,
			`t.yaml:5: ReferenceGrant default/g: spec.from[0].namespace: required`,
		},
	}, {
		name: "BackendTLSPolicy",
		in: `apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {name: p}
spec:
  targetRefs: [{group: "", kind: Service, name: api}]
  validation:
    hostname: "*.example.com"
    caCertificateRefs: [{group: "", kind: ConfigMap, name: ca}]
    wellKnownCACertificates: System
`,
		want: []string{
			`t.yaml:7: BackendTLSPolicy default/p: spec.validation.hostname: invalid hostname "*.example.com": wildcards are not allowed here`,
			`t.yaml:6: BackendTLSPolicy default/p: spec.validation: set caCertificateRefs or wellKnownCACertificates, not both`,
		},
	}, {
		name: "Workload",
		in: `apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: vm}
spec:
  address: vm.example.com
  serviceAccount: Web
  services: [web, 9web]
  ports:
  - {name: http, port: 8080, protocol: http}
  - {name: http, port: 8080}
  - {port: 70000}
  meshPort: 8080
`,
		want: []string{
			`t.yaml:5: Workload default/vm: spec.address: "vm.example.com" is not an IP address`,
			`t.yaml:6: Workload default/vm: spec.serviceAccount: invalid name "Web": must consist of lowercase letters, digits, '-' and '.', start and end with a letter or digit, and be at most 253 characters (an RFC 1123 subdomain)`,
			`t.yaml:7: Workload default/vm: spec.services[1]: invalid name "9web": must consist of lowercase letters, digits and '-', start with a letter, end with a letter or digit, and be at most 63 characters (an RFC 1035 label)`,
			`t.yaml:9: Workload default/vm: spec.ports[0].protocol: unsupported value "http"; one of HTTP, HTTP2, GRPC, TLS, TCP`,
			`t.yaml:10: Workload default/vm: spec.ports[1].port: duplicate port 8080 (also spec.ports[0])`,
			`t.yaml:10: Workload default/vm: spec.ports[1].name: duplicate name "http" (also spec.ports[0])`,
			`t.yaml:11: Workload default/vm: spec.ports[2].port: port 70000 is out of range 1-65535`,
			`t.yaml:12: Workload default/vm: spec.meshPort: port 8080 is also an application port (spec.ports[0]); the sidecar needs its own port`,
		},
	}, {
		name: "MTLSPolicy",
		in: `apiVersion: trellis.dev/v1alpha1
kind: MTLSPolicy
metadata: {name: p, namespace: demo}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]
  mode: strict
  ports: [{port: 8080, mode: DISABLE}, {port: 8080}]
`,
		want: []string{
			`t.yaml:5: MTLSPolicy demo/p: spec.targetRefs[0]: cannot target Gateway.gateway.networking.k8s.io; set group "" and kind Service`,
			`t.yaml:6: MTLSPolicy demo/p: spec.mode: unsupported value "strict"; one of STRICT, PERMISSIVE, DISABLE`,
			`t.yaml:7: MTLSPolicy demo/p: spec.ports[1].port: duplicate port 8080 (also spec.ports[0])`,
			`t.yaml:7: MTLSPolicy demo/p: spec.ports[1].mode: required; one of STRICT, PERMISSIVE, DISABLE`,
		},
	}, {
		name: "AccessPolicy",
		in: `apiVersion: trellis.dev/v1alpha1
kind: AccessPolicy
metadata: {name: p}
spec:
  targetRefs: [{group: "", kind: Service, name: api}]
  rules:
  - from: [{identities: ["spiffe://cluster.local/ns/demo/sa/web", "web"], namespaces: [Demo]}]
    to: [{ports: [0], paths: [api], methods: ["GE T"]}]
`,
		want: []string{
			`t.yaml:4: AccessPolicy default/p: spec.action: required; one of ALLOW, DENY, AUDIT`,
			`t.yaml:7: AccessPolicy default/p: spec.rules[0].from[0].identities[1]: invalid identity "web": a SPIFFE ID (spiffe://trust-domain/ns/NAMESPACE/sa/ACCOUNT), optionally ending in *`,
			`t.yaml:7: AccessPolicy default/p: spec.rules[0].from[0].namespaces[0]: invalid name "Demo": must consist of lowercase letters, digits and '-', start and end with a letter or digit, and be at most 63 characters (an RFC 1123 label)`,
			`t.yaml:8: AccessPolicy default/p: spec.rules[0].to[0].ports[0]: port 0 is out of range 1-65535`,
			`t.yaml:8: AccessPolicy default/p: spec.rules[0].to[0].paths[0]: path "api" must start with "/" (or "*" for a suffix match)`,
			`t.yaml:8: AccessPolicy default/p: spec.rules[0].to[0].methods[0]: invalid method "GE T"`,
		},
	}, {
		name: "BackendPolicy",
		in: `apiVersion: trellis.dev/v1alpha1
kind: BackendPolicy
metadata: {name: p}
spec:
  targetRefs: []
  loadBalancer: {type: Random, hashHeader: x-user}
  outlierDetection: {interval: "10", maxEjectionPercent: 150}
  retryBudget: {percent: 101}
  idleTimeout: 1d
  rateLimit: {requests: 0}
`,
		want: []string{
			`t.yaml:5: BackendPolicy default/p: spec.targetRefs: required: at least one Service`,
			`t.yaml:6: BackendPolicy default/p: spec.loadBalancer.type: unsupported value "Random"; one of RoundRobin, LeastRequest, ConsistentHash`,
			`t.yaml:6: BackendPolicy default/p: spec.loadBalancer: hashHeader and hashCookie need type ConsistentHash`,
			`t.yaml:7: BackendPolicy default/p: spec.outlierDetection.interval: invalid duration "10": use up to four number-unit pairs with units h, m, s, ms, e.g. 1h30m or 500ms`,
			`t.yaml:7: BackendPolicy default/p: spec.outlierDetection.maxEjectionPercent: 150 is out of range 0-100`,
			`t.yaml:8: BackendPolicy default/p: spec.retryBudget.percent: 101 is out of range 0-100`,
			`t.yaml:9: BackendPolicy default/p: spec.idleTimeout: invalid duration "1d": use up to four number-unit pairs with units h, m, s, ms, e.g. 1h30m or 500ms`,
			`t.yaml:10: BackendPolicy default/p: spec.rateLimit.requests: must be at least 1`,
			`t.yaml:10: BackendPolicy default/p: spec.rateLimit.per: required, e.g. 1s`,
		},
	}, {
		name: "valid policies",
		in: `apiVersion: trellis.dev/v1alpha1
kind: AccessPolicy
metadata: {name: p}
spec:
  targetRefs: [{group: "", kind: Service, name: api}]
  action: ALLOW
  rules:
  - from: [{identities: ["spiffe://cluster.local/ns/demo/*"]}]
    to: [{ports: [8080], paths: ["/api/*"], methods: [GET]}]
`,
	}} {
		t.Run(tt.name, func(t *testing.T) {
			o := decodeDefault(t, tt.in, "default")
			err := Validate(o)
			checkErrors(t, err, tt.want)
			for _, e := range flatten(err) {
				var re *Error
				if !errors.As(e, &re) {
					t.Errorf("%v is not an *Error", e)
				}
			}
		})
	}
}

func TestValidateWithoutFile(t *testing.T) {
	o := decodeDefault(t, "apiVersion: trellis.dev/v1alpha1\nkind: MTLSPolicy\nmetadata: {name: p}\nspec: {mode: OFF}\n", "demo")
	b, err := Encode(o)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := DecodeOne("MTLSPolicy", b)
	if err != nil {
		t.Fatal(err)
	}
	checkErrors(t, Validate(stored), []string{`MTLSPolicy demo/p: spec.mode: unsupported value "OFF"; one of STRICT, PERMISSIVE, DISABLE`})
}
