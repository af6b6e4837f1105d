// Package kubesource makes Kubernetes a source of the control plane's
// config: shared informers follow the API server, and every object becomes
// the event the etcd store's watch would deliver for it.
//
//	API server ══informers══► Source ──Update(store.Event)──► control plane (applyItemLocked)
//	  Services, Gateway API,     │    ──SetNamespaces───────►   model ─► analyze ─► translate
//	  trellis.dev kinds          │
//	  Pods, EndpointSlices ──────┘ (as Workloads)
//	  Namespaces (labels), TLS Secrets
//
// Why events into the control plane's own path rather than a second kind
// of source behind an interface: the control plane already turns store
// events into its in-memory objects, dependency keys and debounced pushes;
// feeding it the same events (keys resources/<Kind>/<ns>/<name>, values as
// resource.Encode writes them) keeps one mechanism, and the store, the
// analyzer and the translator never learn where config came from. Only
// the namespace labels, which the store has no place for, arrive through
// their own call.
//
// What becomes what:
//
//   - Services, the Gateway API kinds and the trellis.dev kinds: the
//     object, with status and server-managed metadata (resourceVersion,
//     managedFields, uid) dropped, so that status writes reach nobody.
//     Kinds whose CRDs are not installed are skipped with a warning.
//   - Pods that have an IP, are Running and are not being deleted: a
//     Workload of the Pod's name, labels, service account and container
//     ports. A container named trellis-proxy (SidecarContainer) marks the
//     sidecar: its port named "mesh", else 15008, is the meshPort, and its
//     own ports are not the application's. A Workload resource of the same
//     name wins over the Pod.
//   - EndpointSlices of Services without a selector: a Workload per ready
//     address, named <service>-<address>, listing the Service in services.
//     (Services with a selector get their endpoints from their Pods.)
//   - Namespaces: their labels, for allowedRoutes namespace selectors.
//   - Secrets: only kubernetes.io/tls ones, looked up by Secret for the
//     certificateRefs of Gateway listeners. Serving their certificates to
//     gateways is for the Gateway work to add here.
package kubesource
