// Package xfcc reads and writes x-forwarded-client-cert (XFCC), the header in
// which Envoy, and the Trellis sidecar after it, tell an application which
// client certificate the proxy verified.
//
// On the inbound side the sidecar behaves as Envoy does with
// forward_client_cert_details: SANITIZE_SET and set_current_client_cert_details
// {uri: true}: it drops whatever XFCC the request arrived with and sets one
// element built by [NewElement]:
//
//	By=spiffe://cluster.local/ns/demo/sa/catalog;Hash=<sha256 of the peer's leaf, hex>;URI=spiffe://cluster.local/ns/demo/sa/web
//
// # Format
//
// A header is a comma-separated list of elements, one per proxy hop when
// proxies append (APPEND_FORWARD). An element is a semicolon-separated list of
// key=value pairs. Keys are case-insensitive and one of:
//
//	By       URI SAN of the proxy's own certificate; repeats, one pair per SAN
//	Hash     hex SHA-256 of the client's leaf certificate (DER)
//	Cert     the client's leaf certificate, URL-encoded PEM
//	Chain    the client's chain including the leaf, URL-encoded PEM
//	Subject  the client certificate's subject
//	URI      URI SAN of the client certificate; repeats, one pair per SAN
//	DNS      DNS SAN of the client certificate; repeats, one pair per SAN
//
// By, URI and DNS repeat (Envoy's documentation says so for all three, and
// Envoy writes "URI=" with an empty value when the client certificate has no
// URI SAN); Hash, Cert, Chain and Subject appear at most once.
//
// A value is either bare or double-quoted. A bare value runs to the next ';' or
// ',' and may not contain '"'; it may contain '=' because Envoy writes URI SANs
// unquoted whatever they contain. Inside quotes ',' ';' and '=' are literal,
// \" stands for '"' and \\ for '\'; a backslash before any other character is
// kept as it is, so Envoy's RFC 2253 subjects such as "CN=a\,b" read back
// unchanged.
//
// [Parse] is strict: an unknown key, a repeated single-valued key, an
// unterminated quote, an empty element or pair, a pair without '=', a control
// character, or an element that carries no value at all is an error. Optional
// whitespace is allowed only around elements (as in "a, b", the form HTTP gives
// a header that arrived on several lines); inside an element it is part of the
// key or value.
//
// [Element.String] writes keys in Envoy's order (By, Hash, Cert, Chain, Subject,
// URI, DNS) and, like Envoy, always quotes Cert, Chain and Subject. Other values
// are quoted only when they need it: when they contain ',' ';' '=' or '"', or
// begin or end with whitespace. Whatever Parse accepts, [Format] writes back in
// a form that parses to the same elements.
package xfcc
