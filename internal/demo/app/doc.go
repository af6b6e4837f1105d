// Package app is the application that `trellis demo` runs behind sidecars:
// three services, web → catalog → reviews, where reviews has two versions.
// Every instance is this program with different [Options].
//
//	curl ──► web's sidecar ══mTLS══► ... ──► web app ──► web's sidecar (outbound) ══mTLS══► catalog's sidecar ──► catalog app ──► ...
//	                                          │   plain HTTP on Options.Listen           plain HTTP to Options.Next
//	                                          └── reads the caller from x-forwarded-client-cert
//
// An app serves plain HTTP. Its sidecar delivers mesh traffic to it with the
// caller it verified in x-forwarded-client-cert (see package xfcc). An app
// with a next hop calls Options.Next, its own sidecar's outbound listener,
// which does the mTLS, and includes the next hop's answer in its own. The
// answer to `curl` is therefore the whole chain: for every service the request
// crossed, which caller that service's sidecar verified. A hop without a
// verified caller, or with a header that does not parse, says so.
//
// Endpoints:
//
//	GET /healthz   200 "ok"
//	GET /...       the chain: JSON ([Chain]) when Accept names application/json
//	               or the query has format=json, text for people otherwise;
//	               502 when a later hop failed, with the hops that answered
//
// x-request-id is passed on to the next hop when the request has one.
package app
