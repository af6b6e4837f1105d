// Package kubesource makes Kubernetes a source of the control plane's
// config: shared informers follow the API server, every object becomes the
// event the etcd store's watch would deliver for it, and status is written
// back to the objects by the one control plane that leads.
//
//	API server ══informers══► Source ──Update(store.Event)──► control plane (applyItemLocked)
//	  Services, Gateway API,     │    ──SetNamespaces───────►   model ─► analyze ─► translate
//	  trellis.dev kinds          │                                 │
//	  Pods, EndpointSlices ──────┘ (as Workloads)                  │ Analysis()
//	  Namespaces (labels), TLS Secrets                             ▼
//	       ▲                                        leader only: reconcile status
//	       └──────────── PATCH …/status (only what differs) ◄──────┘
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
//     sidecar: its port named "trellis-mesh", else 15008, is the meshPort, and its
//     own ports are not the application's. A Workload resource of the same
//     name wins over the Pod, and the control plane lets a sidecar's
//     registration of the same name replace it.
//   - EndpointSlices of Services without a selector: a Workload per ready
//     address, named <service>-<address>, listing the Service in services.
//     (Services with a selector get their endpoints from their Pods.)
//   - Namespaces: their labels, for allowedRoutes namespace selectors.
//   - ServiceAccounts are not followed: a Pod's identity is its
//     spec.serviceAccountName, and nothing in the model reads more.
//   - Secrets: only kubernetes.io/tls ones, looked up by Secret for the
//     certificateRefs of Gateway listeners (InvalidCertificateRef), without
//     their data; gateway pods mount them (gatewaydeploy.go).
//
// Status (status.go) is derived from the analyzer's findings and route
// attachments (analyze.Attachments), the same judgement the translator's
// input gets: GatewayClasses of controllerName trellis.dev/gateway are
// Accepted; their Gateways get Accepted and Programmed and per listener
// Accepted, Conflicted (ProtocolConflict, HostnameConflict), ResolvedRefs
// (RefNotPermitted, InvalidCertificateRef, InvalidRouteKinds), Programmed
// and attachedRoutes (and attachedListenerSets); ListenerSets of those
// Gateways get Accepted (NotAllowed), Programmed and the same listener
// conditions; routes get, per parentRef Trellis serves, Accepted
// (NotAllowedByListeners, NoMatchingParent, NoMatchingListenerHostname)
// and ResolvedRefs (BackendNotFound, RefNotPermitted, InvalidKind);
// trellis.dev kinds get Accepted, ResolvedRefs and Analyzed, the
// findings' codes, fields and messages in the messages. A status is
// written (a merge patch of the status subresource, conditional on the
// resourceVersion read) only when it differs from the object's, with
// observedGeneration set and lastTransitionTime kept for conditions that
// did not change. A Gateway's addresses and Programmed come from what runs
// it (gatewayinstances.go): its Service's load-balancer ingress, else its
// Ready pods' IPs, Programmed once one of them has acknowledged its config
// (Analysis.Proxies); GatewayStatus is the same computation for the
// control plane's API off Kubernetes. Only the leader of a Lease writes
// (leader.go), and it also keeps what each Gateway runs on: a
// ServiceAccount, a Deployment and a Service per Gateway, and copies of
// granted certificate Secrets of other namespaces (gatewaydeploy.go).
package kubesource
