package resource

import (
	"errors"
	"testing"
)

// TestValidateTestdata checks that the realistic objects of testdata,
// every Gateway API kind among them, are valid.
func TestValidateTestdata(t *testing.T) {
	seen := make(map[string]bool)
	for _, file := range []string{"testdata/mesh.yaml", "testdata/gateway-api.yaml"} {
		objs, err := Decode(file, mustRead(t, file))
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			Default(o, "default")
			if err := Validate(o); err != nil {
				t.Errorf("%s: %v", o.Ref(), err)
			}
			seen[o.Kind] = true
		}
	}
	for _, k := range kinds {
		if k.Group == gatewayGroup && !seen[k.Kind] {
			t.Errorf("testdata has no %s", k.Kind)
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
		name: "Service as the apiserver checks it",
		in: `apiVersion: v1
kind: Service
metadata: {name: api, namespace: demo}
spec:
  type: NodePort
  clusterIP: None
  sessionAffinity: Sticky
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 10}}
  externalIPs: [192.0.2.1, 192.0.2.300]
  loadBalancerSourceRanges: [10.0.0.0/8]
  externalTrafficPolicy: Global
  internalTrafficPolicy: Node
  ipFamilyPolicy: DualStack
  ipFamilies: [IPv4, IPv4, IPv5]
  ports:
  - name: http
    port: 80
    nodePort: 30080
    appProtocol: "h2 c"
  - name: https
    port: 443
    nodePort: 30080
`,
		want: []string{
			`t.yaml:6: Service demo/api: spec.clusterIP: may not be "None" for NodePort services`,
			`t.yaml:19: Service demo/api: spec.ports[0].appProtocol: invalid appProtocol "h2 c": a name of letters, digits, '-', '_' and '.' with an optional DNS subdomain prefix and '/', e.g. http or kubernetes.io/h2c`,
			`t.yaml:22: Service demo/api: spec.ports[1].nodePort: duplicate node port 30080/TCP (also spec.ports[0])`,
			`t.yaml:7: Service demo/api: spec.sessionAffinity: unsupported value "Sticky"; one of None, ClientIP`,
			`t.yaml:8: Service demo/api: spec.sessionAffinityConfig: may be set only when sessionAffinity is ClientIP`,
			`t.yaml:9: Service demo/api: spec.externalIPs[1]: "192.0.2.300" is not an IP address`,
			`t.yaml:10: Service demo/api: spec.loadBalancerSourceRanges: may be set only when type is LoadBalancer`,
			`t.yaml:11: Service demo/api: spec.externalTrafficPolicy: unsupported value "Global"; one of Cluster, Local`,
			`t.yaml:12: Service demo/api: spec.internalTrafficPolicy: unsupported value "Node"; one of Cluster, Local`,
			`t.yaml:13: Service demo/api: spec.ipFamilyPolicy: unsupported value "DualStack"; one of SingleStack, PreferDualStack, RequireDualStack`,
			`t.yaml:14: Service demo/api: spec.ipFamilies: at most two families (IPv4 and IPv6)`,
			`t.yaml:14: Service demo/api: spec.ipFamilies[1]: duplicate family IPv4`,
			`t.yaml:14: Service demo/api: spec.ipFamilies[2]: unsupported value "IPv5"; one of IPv4, IPv6`,
		},
	}, {
		name: "ExternalName Service",
		in: `apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  type: ExternalName
  externalName: db_primary.example.com
  clusterIP: 10.0.0.1
  ports: [{port: 5432, nodePort: 30000}]
`,
		want: []string{
			`t.yaml:7: Service default/db: spec.clusterIP: may not be set for ExternalName services`,
			`t.yaml:6: Service default/db: spec.externalName: invalid name "db_primary.example.com": must consist of lowercase letters, digits, '-' and '.', start and end with a letter or digit, and be at most 253 characters (an RFC 1123 subdomain)`,
		},
	}, {
		name: "valid Services",
		in: `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: db}
  spec: {type: ExternalName, externalName: db.example.com.}
- apiVersion: v1
  kind: Service
  metadata: {name: web}
  spec:
    type: LoadBalancer
    selector: {app: web}
    sessionAffinity: ClientIP
    sessionAffinityConfig: {clientIP: {timeoutSeconds: 600}}
    externalTrafficPolicy: Local
    loadBalancerSourceRanges: [10.0.0.0/8, " 192.168.0.0/16"]
    ipFamilyPolicy: PreferDualStack
    ipFamilies: [IPv6, IPv4]
    ports:
    - {name: http, port: 80, targetPort: http, nodePort: 30080, appProtocol: kubernetes.io/h2c}
    - {name: dns, port: 53, protocol: UDP, nodePort: 30080}
`,
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
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: zoned}
spec:
  address: fe80::1%eth0
  ports: [{name: Not_A_Port, port: 80}]
`,
		want: []string{
			`t.yaml:5: Workload default/vm: spec.address: invalid value "vm.example.com": must be an IP address, e.g. 10.0.0.5 or fd00::5`,
			`t.yaml:6: Workload default/vm: spec.serviceAccount: invalid value "Web": must consist of lowercase letters, digits, '-' and '.', start and end with a letter or digit, and be at most 253 characters (an RFC 1123 subdomain)`,
			`t.yaml:7: Workload default/vm: spec.services[1]: invalid value "9web": must consist of lowercase letters, digits and '-', start with a letter, end with a letter or digit, and be at most 63 characters (an RFC 1035 label)`,
			`t.yaml:8: Workload default/vm: spec.ports: names must be unique`,
			`t.yaml:9: Workload default/vm: spec.ports[0].protocol: unsupported value "http"; supported values: "HTTP", "HTTP2", "GRPC", "TLS", "TCP"`,
			`t.yaml:10: Workload default/vm: spec.ports[1]: duplicate entry with port 8080`,
			`t.yaml:11: Workload default/vm: spec.ports[2].port: invalid value 70000: should be less than or equal to 65535`,
			`t.yaml:12: Workload default/vm: spec.meshPort: the mesh port is also an application port (spec.ports); the sidecar needs its own port`,
			`t.yaml:18: Workload default/zoned: spec.address: invalid value "fe80::1%eth0": must be an IP address, e.g. 10.0.0.5 or fd00::5`,
			`t.yaml:19: Workload default/zoned: spec.ports[0].name: invalid value "Not_A_Port": must be at most 15 lowercase letters, digits and single '-', with at least one letter, not starting or ending with '-' (an IANA service name)`,
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
			`t.yaml:5: MTLSPolicy demo/p: spec.targetRefs[0]: an MTLSPolicy targets Services: set group "" and kind Service`,
			`t.yaml:6: MTLSPolicy demo/p: spec.mode: unsupported value "strict"; supported values: "STRICT", "PERMISSIVE", "DISABLE"`,
			`t.yaml:7: MTLSPolicy demo/p: spec.ports[1]: duplicate entry with port 8080`,
			`t.yaml:7: MTLSPolicy demo/p: spec.ports[1].mode: required`,
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
    to: [{ports: [0], paths: [api], methods: ["GE T"], headers: [{type: RegularExpression, name: x-user, value: "[z-a]"}]}]
`,
		want: []string{
			`t.yaml:4: AccessPolicy default/p: spec.action: required`,
			`t.yaml:7: AccessPolicy default/p: spec.rules[0].from[0].identities[1]: invalid value "web": must be a SPIFFE ID (spiffe://trust-domain/ns/NAMESPACE/sa/ACCOUNT), optionally ending in *`,
			`t.yaml:7: AccessPolicy default/p: spec.rules[0].from[0].namespaces[0]: invalid value "Demo": must consist of lowercase letters, digits and '-', start and end with a letter or digit, and be at most 63 characters (an RFC 1123 label)`,
			"t.yaml:8: AccessPolicy default/p: spec.rules[0].to[0].methods[0]: invalid value \"GE T\": must be an HTTP token: letters, digits and !#$%&'*+-.^_`|~",
			`t.yaml:8: AccessPolicy default/p: spec.rules[0].to[0].paths[0]: invalid value "api": must start with "/" (or "*" for a suffix match)`,
			`t.yaml:8: AccessPolicy default/p: spec.rules[0].to[0].ports[0]: invalid value 0: should be greater than or equal to 1`,
			`t.yaml:8: AccessPolicy default/p: spec.rules[0].to[0].headers[0].value: invalid regular expression (RE2 syntax): error parsing regexp: invalid character class range: ` + "`z-a`",
		},
	}, {
		name: "BackendPolicy",
		in: `apiVersion: trellis.dev/v1alpha1
kind: BackendPolicy
metadata: {name: p}
spec:
  targetRefs: []
  tls: {mode: Strict}
  loadBalancer: {type: Random, hashHeader: x-user}
  outlierDetection: {interval: "10", maxEjectionPercent: 150}
  retryBudget: {percent: 101}
  idleTimeout: 1d
  rateLimit: {requests: 0}
`,
		want: []string{
			`t.yaml:5: BackendPolicy default/p: spec.targetRefs: should have at least 1 items`,
			`t.yaml:6: BackendPolicy default/p: spec.tls.mode: unsupported value "Strict"; supported values: "Mesh", "RequireMesh", "Disable"`,
			`t.yaml:7: BackendPolicy default/p: spec.loadBalancer: hashHeader and hashCookie need type ConsistentHash`,
			`t.yaml:7: BackendPolicy default/p: spec.loadBalancer.type: unsupported value "Random"; supported values: "RoundRobin", "LeastRequest", "ConsistentHash"`,
			`t.yaml:8: BackendPolicy default/p: spec.outlierDetection.interval: invalid value "10": must be a duration of up to four number-unit pairs with units h, m, s, ms, e.g. 1h30m or 500ms`,
			`t.yaml:8: BackendPolicy default/p: spec.outlierDetection.maxEjectionPercent: invalid value 150: should be less than or equal to 100`,
			`t.yaml:9: BackendPolicy default/p: spec.retryBudget.percent: invalid value 101: should be less than or equal to 100`,
			`t.yaml:10: BackendPolicy default/p: spec.idleTimeout: invalid value "1d": must be a duration of up to four number-unit pairs with units h, m, s, ms, e.g. 1h30m or 500ms`,
			`t.yaml:11: BackendPolicy default/p: spec.rateLimit.per: required`,
			`t.yaml:11: BackendPolicy default/p: spec.rateLimit.requests: invalid value 0: should be greater than or equal to 1`,
		},
	}, {
		name: "BackendPolicy section and refill",
		in: `apiVersion: trellis.dev/v1alpha1
kind: BackendPolicy
metadata: {name: p}
spec:
  targetRefs: [{group: "", kind: Service, name: api, sectionName: Not_A_Port}]
  rateLimit: {requests: 10, per: 10ms}
`,
		want: []string{
			`t.yaml:5: BackendPolicy default/p: spec.targetRefs[0].sectionName: invalid value "Not_A_Port": should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'`,
			`t.yaml:5: BackendPolicy default/p: spec.targetRefs[0].sectionName: sectionName must name a Service port: at most 15 lowercase letters, digits and single '-', with at least one letter, not starting or ending with '-' (an IANA service name)`,
			`t.yaml:6: BackendPolicy default/p: spec.rateLimit.per: invalid value "10ms": shorter than 50ms, the shortest refill interval of the proxies' token bucket`,
		},
	}, {
		name: "BackendPolicy faults",
		in: `apiVersion: trellis.dev/v1alpha1
kind: BackendPolicy
metadata: {name: p}
spec:
  targetRefs: [{group: "", kind: Service, name: api}]
  faults:
    delay: {percent: 101}
    abort: {percent: -1, httpStatus: 700}
---
apiVersion: trellis.dev/v1alpha1
kind: BackendPolicy
metadata: {name: q}
spec:
  targetRefs: [{group: "", kind: Service, name: api}]
  faults: {abort: {percent: 10, httpStatus: 503, grpcStatus: 14}}
---
apiVersion: trellis.dev/v1alpha1
kind: BackendPolicy
metadata: {name: r}
spec:
  targetRefs: [{group: "", kind: Service, name: api}]
  faults: {abort: {percent: 10, grpcStatus: 17}, delay: {percent: 5, duration: 2d}}
---
apiVersion: trellis.dev/v1alpha1
kind: BackendPolicy
metadata: {name: s}
spec:
  targetRefs: [{group: "", kind: Service, name: api}]
  faults: {}
`,
		want: []string{
			`t.yaml:7: BackendPolicy default/p: spec.faults.delay.duration: required`,
			`t.yaml:7: BackendPolicy default/p: spec.faults.delay.percent: invalid value 101: should be less than or equal to 100`,
			`t.yaml:8: BackendPolicy default/p: spec.faults.abort.httpStatus: invalid value 700: should be less than or equal to 599`,
			`t.yaml:8: BackendPolicy default/p: spec.faults.abort.percent: invalid value -1: should be greater than or equal to 0`,
			`t.yaml:15: BackendPolicy default/q: spec.faults.abort: set httpStatus or grpcStatus, not both`,
			`t.yaml:22: BackendPolicy default/r: spec.faults.abort.grpcStatus: invalid value 17: should be less than or equal to 16`,
			`t.yaml:22: BackendPolicy default/r: spec.faults.delay.duration: invalid value "2d": must be a duration of up to four number-unit pairs with units h, m, s, ms, e.g. 1h30m or 500ms`,
			`t.yaml:29: BackendPolicy default/s: spec.faults: set delay, abort or both`,
		},
	}, {
		name: "BackendPolicy tls mode required",
		in:   "apiVersion: trellis.dev/v1alpha1\nkind: BackendPolicy\nmetadata: {name: p}\nspec:\n  targetRefs: [{group: \"\", kind: Service, name: api}]\n  tls: {}\n",
		want: []string{`t.yaml:6: BackendPolicy default/p: spec.tls.mode: required`},
	}, {
		name: "valid policies",
		in: `apiVersion: trellis.dev/v1alpha1
kind: BackendPolicy
metadata: {name: b}
spec:
  targetRefs: [{group: "", kind: Service, name: api}]
  tls: {mode: RequireMesh}
---
apiVersion: trellis.dev/v1alpha1
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
			checkErrors(t, validateAll(t, tt.in), tt.want)
		})
	}
}

// validateAll decodes, defaults and validates every object of in,
// checking that every error is an *Error.
func validateAll(t *testing.T, in string) error {
	t.Helper()
	objs, err := Decode("t.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) == 0 {
		t.Fatal("no objects")
	}
	var errs []error
	for _, o := range objs {
		Default(o, "default")
		err := Validate(o)
		for _, e := range unjoin(err) {
			var re *Error
			if !errors.As(e, &re) {
				t.Errorf("%v is not an *Error", e)
			}
			errs = append(errs, e)
		}
	}
	return errors.Join(errs...)
}

// TestValidateGatewayAPI shows the rules of the Gateway API CRDs, run by
// package schema, reported with file, line, resource and field.
func TestValidateGatewayAPI(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   string
		want []string // nil: valid
	}{{
		name: "regular expressions the proxies cannot compile",
		in: `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: demo}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches:
    - path: {type: RegularExpression, value: "/items/(\\d+"}
      headers: [{type: RegularExpression, name: x-user, value: "[z-a]"}]
      queryParams: [{type: RegularExpression, name: q, value: "a{2,1}"}]
`,
		want: []string{
			"t.yaml:8: HTTPRoute demo/r: spec.rules[0].matches[0].path.value: invalid regular expression (RE2 syntax): error parsing regexp: missing closing ): `/items/(\\d+`",
			"t.yaml:9: HTTPRoute demo/r: spec.rules[0].matches[0].headers[0].value: invalid regular expression (RE2 syntax): error parsing regexp: invalid character class range: `z-a`",
			"t.yaml:10: HTTPRoute demo/r: spec.rules[0].matches[0].queryParams[0].value: invalid regular expression (RE2 syntax): error parsing regexp: invalid repeat count: `{2,1}`",
		},
	}, {
		name: "GatewayClass",
		in: `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: trellis}
spec:
  controllerName: trellis
  parametersRef: {group: "", kind: ConfigMap, name: ""}
`,
		want: []string{
			`t.yaml:5: GatewayClass trellis: spec.controllerName: invalid value "trellis": should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/[A-Za-z0-9\/\-._~%!$&'()*+,;=:]+$'`,
			`t.yaml:6: GatewayClass trellis: spec.parametersRef.name: invalid value "": should be at least 1 chars long`,
		},
	}, {
		name: "Gateway",
		in: `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: trellis
  addresses: [{type: IPAddress, value: 10.0.0.1}, {value: 10.0.0.1}]
  listeners:
  - name: http
    port: 80
    protocol: HTTP
    hostname: "foo.*.com"
    tls: {certificateRefs: [{name: cert}]}
  - name: http
    port: 0
    protocol: HTTPS
    tls: {mode: Passthrough}
  - name: Bad_Name
    port: 443
    protocol: TLS
    allowedRoutes: {namespaces: {from: Everywhere}}
  - name: db
    port: 5432
    protocol: TCP
    hostname: db.example.com
`,
		want: []string{
			`t.yaml:6: Gateway infra/gw: spec.addresses: IPAddress values must be unique`,
			`t.yaml:7: Gateway infra/gw: spec.listeners: tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']`,
			`t.yaml:7: Gateway infra/gw: spec.listeners: tls mode must be Terminate for protocol HTTPS`,
			`t.yaml:7: Gateway infra/gw: spec.listeners: tls mode must be set for protocol TLS`,
			`t.yaml:7: Gateway infra/gw: spec.listeners: hostname must not be specified for protocols ['TCP', 'UDP']`,
			`t.yaml:11: Gateway infra/gw: spec.listeners[0].hostname: invalid value "foo.*.com": should match '^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'`,
			`t.yaml:13: Gateway infra/gw: spec.listeners[1]: duplicate entry with name "http"`,
			`t.yaml:14: Gateway infra/gw: spec.listeners[1].port: invalid value 0: should be greater than or equal to 1`,
			`t.yaml:17: Gateway infra/gw: spec.listeners[2].name: invalid value "Bad_Name": should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'`,
			`t.yaml:20: Gateway infra/gw: spec.listeners[2].allowedRoutes.namespaces.from: unsupported value "Everywhere"; supported values: "All", "Selector", "Same"`,
		},
	}, {
		name: "Gateway: required fields",
		in:   "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  listeners:\n  - name: http\n",
		want: []string{
			`t.yaml:4: Gateway default/gw: spec.gatewayClassName: required`,
			`t.yaml:6: Gateway default/gw: spec.listeners[0].port: required`,
			`t.yaml:6: Gateway default/gw: spec.listeners[0].protocol: required`,
		},
	}, {
		name: "ListenerSet",
		in: `apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: team-a, namespace: team-a}
spec:
  parentRef: {name: shared, namespace: infra}
  listeners:
  - {name: a, port: 8443, protocol: HTTPS, hostname: a.example.com}
  - {name: a, port: 8443, protocol: HTTPS, hostname: a.example.com, tls: {certificateRefs: [{name: a-cert}]}}
  - {name: b, port: 65536, protocol: "http/1.1"}
`,
		want: []string{
			`t.yaml:6: ListenerSet team-a/team-a: spec.listeners: Combination of port, protocol and hostname must be unique for each listener`,
			`t.yaml:8: ListenerSet team-a/team-a: spec.listeners[1]: duplicate entry with name "a"`,
			`t.yaml:9: ListenerSet team-a/team-a: spec.listeners[2].port: invalid value 65536: should be less than or equal to 65535`,
			`t.yaml:9: ListenerSet team-a/team-a: spec.listeners[2].protocol: invalid value "http/1.1": should match '^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/[A-Za-z0-9]+$'`,
		},
	}, {
		name: "HTTPRoute",
		in: `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: demo}
spec:
  parentRefs:
  - {name: gw, namespace: infra, port: 65536}
  - {name: gw, namespace: infra}
  hostnames: ["*", "Shop.example.com"]
  rules:
  - matches:
    - path: {type: PathPrefix, value: api}
      method: FETCH
      headers: [{name: "x header", value: a}]
    backendRefs:
    - name: api
    - {name: api, port: 8080, weight: 1000001}
    timeouts: {request: 10 seconds}
  - filters:
    - type: RequestRedirect
      requestRedirect: {scheme: https}
    - type: URLRewrite
      urlRewrite: {hostname: www.example.com}
    backendRefs: [{name: web, port: 80}]
  - backendRefs: [{name: web, port: 80}]
    retry: {attempts: 3}
`,
		want: []string{
			`t.yaml:5: HTTPRoute demo/web: spec.parentRefs: sectionName must be unique when parentRefs includes 2 or more references to the same parent`,
			`t.yaml:6: HTTPRoute demo/web: spec.parentRefs[0].port: invalid value 65536: should be less than or equal to 65535`,
			`t.yaml:8: HTTPRoute demo/web: spec.hostnames[0]: invalid value "*": should match '^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'`,
			`t.yaml:8: HTTPRoute demo/web: spec.hostnames[1]: invalid value "Shop.example.com": should match '^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'`,
			`t.yaml:11: HTTPRoute demo/web: spec.rules[0].matches[0].path: value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']`,
			`t.yaml:12: HTTPRoute demo/web: spec.rules[0].matches[0].method: unsupported value "FETCH"; supported values: "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"`,
			"t.yaml:13: HTTPRoute demo/web: spec.rules[0].matches[0].headers[0].name: invalid value \"x header\": must be an HTTP token: letters, digits and !#$%&'*+-.^_`|~",
			`t.yaml:15: HTTPRoute demo/web: spec.rules[0].backendRefs[0]: Must have port for Service reference`,
			`t.yaml:16: HTTPRoute demo/web: spec.rules[0].backendRefs[1].weight: invalid value 1000001: should be less than or equal to 1000000`,
			`t.yaml:17: HTTPRoute demo/web: spec.rules[0].timeouts.request: invalid value "10 seconds": must be a duration of up to four number-unit pairs with units h, m, s, ms, e.g. 1h30m or 500ms`,
			`t.yaml:18: HTTPRoute demo/web: spec.rules[1]: RequestRedirect filter must not be used together with backendRefs`,
			`t.yaml:18: HTTPRoute demo/web: spec.rules[1].filters: May specify either httpRouteFilterRequestRedirect or httpRouteFilterRequestRewrite, but not both`,
			`t.yaml:25: HTTPRoute demo/web: spec.rules[2].retry: unknown field "retry" (not in the Gateway API standard channel)`,
		},
	}, {
		name: "HTTPRoute: list limits",
		in: `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web}
spec:
  hostnames: [a.example.com, b.example.com, c.example.com, d.example.com, e.example.com, f.example.com, g.example.com, h.example.com,
    i.example.com, j.example.com, k.example.com, l.example.com, m.example.com, n.example.com, o.example.com, p.example.com, q.example.com]
  rules:
  - matches: [{path: {value: api}}]
    filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: shadow, port: 80}, percent: 101}
`,
		want: []string{
			`t.yaml:5: HTTPRoute default/web: spec.hostnames: too many items (17): must have at most 16 items`,
			`t.yaml:11: HTTPRoute default/web: spec.rules[0].filters[0].requestMirror.percent: invalid value 101: should be less than or equal to 100`,
			`t.yaml:1: HTTPRoute default/web: the CEL validation rules were not checked because a list or string is over its limit; correct the errors above to check them`,
		},
	}, {
		name: "GRPCRoute",
		in: `apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: g}
spec:
  parentRefs: [{name: gw, sectionName: grpc}, {name: gw, sectionName: grpc}]
  hostnames: [grpc.example.com]
  rules:
  - matches:
    - method: {type: Exact}
    - method: {service: "hello world", method: "Say-Hello"}
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-a, value: "1"}]}
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-b, value: "2"}]}
    backendRefs: [{name: greeter}]
`,
		want: []string{
			`t.yaml:5: GRPCRoute default/g: spec.parentRefs: sectionName must be unique when parentRefs includes 2 or more references to the same parent`,
			`t.yaml:9: GRPCRoute default/g: spec.rules[0].matches[0].method: One or both of 'service' or 'method' must be specified`,
			`t.yaml:10: GRPCRoute default/g: spec.rules[0].matches[1].method: service must only contain valid characters (matching ^(?i)\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$)`,
			`t.yaml:10: GRPCRoute default/g: spec.rules[0].matches[1].method: method must only contain valid characters (matching ^[A-Za-z_][A-Za-z_0-9]*$)`,
			`t.yaml:11: GRPCRoute default/g: spec.rules[0].filters: RequestHeaderModifier filter cannot be repeated`,
			`t.yaml:16: GRPCRoute default/g: spec.rules[0].backendRefs[0]: Must have port for Service reference`,
		},
	}, {
		name: "TLSRoute",
		in: `apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {name: t}
spec:
  parentRefs: [{name: gw}]
  hostnames: ["10.0.0.1", "db.*.example.com"]
  rules: [{backendRefs: [{name: db}]}]
`,
		want: []string{
			`t.yaml:6: TLSRoute default/t: spec.hostnames: Hostnames cannot contain an IP`,
			`t.yaml:6: TLSRoute default/t: spec.hostnames: Wildcards on hostnames must be the first label, and the rest of hostname must be valid based on RFC-1123`,
			`t.yaml:6: TLSRoute default/t: spec.hostnames[1]: invalid value "db.*.example.com": should match '^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'`,
			`t.yaml:7: TLSRoute default/t: spec.rules[0].backendRefs[0]: Must have port for Service reference`,
		},
	}, {
		name: "TLSRoute: one rule",
		in:   "apiVersion: gateway.networking.k8s.io/v1\nkind: TLSRoute\nmetadata: {name: t}\nspec:\n  parentRefs: [{name: gw}]\n  rules: [{}, {}]\n",
		want: []string{
			`t.yaml:4: TLSRoute default/t: spec.hostnames: required`,
			`t.yaml:6: TLSRoute default/t: spec.rules: too many items (2): must have at most 1 item`,
			`t.yaml:6: TLSRoute default/t: spec.rules[0].backendRefs: required`,
			`t.yaml:6: TLSRoute default/t: spec.rules[1].backendRefs: required`,
			`t.yaml:1: TLSRoute default/t: the CEL validation rules were not checked because a list or string is over its limit; correct the errors above to check them`,
		},
	}, {
		name: "TCPRoute",
		in: `apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {name: t}
spec:
  parentRefs: [{name: gw}, {name: gw, sectionName: db}]
  rules: [{backendRefs: [{name: db, port: 5432, weight: -1}]}]
`,
		want: []string{
			`t.yaml:5: TCPRoute default/t: spec.parentRefs: sectionName must be specified when parentRefs includes 2 or more references to the same parent`,
			`t.yaml:6: TCPRoute default/t: spec.rules[0].backendRefs[0].weight: invalid value -1: should be greater than or equal to 0`,
		},
	}, {
		name: "ReferenceGrant",
		in: `apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: g}
spec:
  from:
  - {group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: ""}
  - {group: gateway.networking.k8s.io, kind: "http route", namespace: Demo}
  to: []
`,
		want: []string{
			`t.yaml:6: ReferenceGrant default/g: spec.from[0].namespace: invalid value "": should be at least 1 chars long`,
			`t.yaml:7: ReferenceGrant default/g: spec.from[1].kind: invalid value "http route": should match '^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$'`,
			`t.yaml:7: ReferenceGrant default/g: spec.from[1].namespace: invalid value "Demo": should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'`,
			`t.yaml:8: ReferenceGrant default/g: spec.to: should have at least 1 items`,
		},
	}, {
		name: "BackendTLSPolicy",
		in: `apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {name: p}
spec:
  targetRefs: [{group: "", kind: Service, name: api}, {group: "", kind: Service, name: api}]
  validation:
    hostname: "*.example.com"
    caCertificateRefs: [{group: "", kind: ConfigMap, name: ca}]
    wellKnownCACertificates: System
    subjectAltNames: [{type: URI, hostname: api.example.com}]
`,
		want: []string{
			`t.yaml:5: BackendTLSPolicy default/p: spec.targetRefs: sectionName must be unique when targetRefs includes 2 or more references to the same target`,
			`t.yaml:6: BackendTLSPolicy default/p: spec.validation: must not contain both CACertificateRefs and WellKnownCACertificates`,
			`t.yaml:7: BackendTLSPolicy default/p: spec.validation.hostname: invalid value "*.example.com": should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'`,
			`t.yaml:10: BackendTLSPolicy default/p: spec.validation.subjectAltNames[0]: SubjectAltName element must not contain Hostname, if Type is not set to Hostname`,
			`t.yaml:10: BackendTLSPolicy default/p: spec.validation.subjectAltNames[0]: SubjectAltName element must contain URI, if Type is set to URI`,
		},
	}, {
		name: "BackendTLSPolicy: validation required",
		in:   "apiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\nmetadata: {name: p}\nspec:\n  targetRefs: [{group: \"\", kind: Service, name: api}]\n",
		want: []string{`t.yaml:4: BackendTLSPolicy default/p: spec.validation: required`},
	}, {
		name: "metadata as the apiserver checks it",
		in:   "apiVersion: gateway.networking.k8s.io/v1\nkind: TCPRoute\nmetadata: {name: DB, labels: {\"a b\": x}}\nspec:\n  rules: [{backendRefs: [{name: db, port: 5432}]}]\n",
		want: []string{
			`t.yaml:3: TCPRoute default/DB: metadata.name: invalid name "DB": must consist of lowercase letters, digits, '-' and '.', start and end with a letter or digit, and be at most 253 characters (an RFC 1123 subdomain)`,
			`t.yaml:3: TCPRoute default/DB: metadata.labels[a b]: invalid label key "a b": must be a name of letters, digits, '-', '_' and '.' (at most 63) with an optional DNS subdomain prefix and '/', e.g. app.kubernetes.io/name`,
		},
	}} {
		t.Run(tt.name, func(t *testing.T) {
			checkErrors(t, validateAll(t, tt.in), tt.want)
		})
	}
}

// TestValidateStored validates Gateway API objects as read back from the
// store: no file and line, and no way to tell a missing field from a
// written zero value.
func TestValidateStored(t *testing.T) {
	o := decodeDefault(t, "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  listeners: [{name: http, port: 80, protocol: HTTP}]\n", "demo")
	b, err := Encode(o)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := DecodeOne("Gateway", b)
	if err != nil {
		t.Fatal(err)
	}
	checkErrors(t, Validate(stored), []string{`Gateway demo/gw: spec.gatewayClassName: invalid value "": should be at least 1 chars long`})
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
	checkErrors(t, Validate(stored), []string{`MTLSPolicy demo/p: spec.mode: unsupported value "OFF"; supported values: "STRICT", "PERMISSIVE", "DISABLE"`})
}

// BenchmarkDefaultValidateHTTPRoute measures Default and Validate of the
// HTTPRoute of testdata/gateway-api.yaml (four rules: matches on path,
// header, query and method, five filters, weighted backends): the cost of
// one Gateway API object on the write path.
func BenchmarkDefaultValidateHTTPRoute(b *testing.B) {
	data := mustRead(b, "testdata/gateway-api.yaml")
	objs, err := Decode("gateway-api.yaml", data)
	if err != nil {
		b.Fatal(err)
	}
	var doc []byte
	for _, o := range objs {
		if o.Kind == "HTTPRoute" {
			doc, _ = Encode(o)
		}
	}
	b.Run("Default", func(b *testing.B) {
		for b.Loop() {
			o, _ := DecodeOne("HTTPRoute", doc)
			Default(o, "default")
		}
	})
	b.Run("Validate", func(b *testing.B) {
		o, _ := DecodeOne("HTTPRoute", doc)
		Default(o, "default")
		for b.Loop() {
			if err := Validate(o); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("DecodeOne", func(b *testing.B) {
		for b.Loop() {
			_, _ = DecodeOne("HTTPRoute", doc)
		}
	})
}

// BenchmarkDefaultValidateTrellis measures Default and Validate of each
// trellis.dev object of testdata/mesh.yaml, by their CRDs: the cost of one
// Trellis object on the write path.
func BenchmarkDefaultValidateTrellis(b *testing.B) {
	objs, err := Decode("mesh.yaml", mustRead(b, "testdata/mesh.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	seen := map[string]bool{}
	for _, o := range objs {
		if info, _ := kindByName(o.Kind); info.Group != trellisGroup || seen[o.Kind] {
			continue
		}
		seen[o.Kind] = true
		doc, err := Encode(o)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(o.Kind, func(b *testing.B) {
			for b.Loop() {
				o, _ := DecodeOne(o.Kind, doc)
				Default(o, "default")
				if err := Validate(o); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	if len(seen) == 0 {
		b.Fatal("no trellis.dev objects in testdata/mesh.yaml")
	}
}
