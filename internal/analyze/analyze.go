package analyze

import (
	"fmt"

	"trellis.dev/trellis/internal/model"
)

// Analyze returns every finding about c, sorted (see Sort).
func Analyze(c *model.Config) []Finding { return AnalyzeParts(c, AllParts) }

// Part is a part of the analyzer's checks. PartWorkloads holds every check
// that reads workloads; PartRest those that read none, whose findings a
// change of workloads alone leaves as they were. A control plane judging
// endpoint churn thus runs only PartWorkloads.
type Part int

const (
	PartRest Part = 1 << iota
	PartWorkloads
	AllParts = PartRest | PartWorkloads
)

// checks are the analyzer's checks in the order they run (precedence uses
// what routes records), each in its part.
var checks = []struct {
	part Part
	run  func(*analyzer)
}{
	{PartRest, (*analyzer).gateways},
	{PartRest, (*analyzer).routes},
	{PartRest, (*analyzer).precedence},
	{PartRest, (*analyzer).eastWest},
	{PartWorkloads, (*analyzer).policies},
	{PartWorkloads, (*analyzer).networks},
	{PartRest, (*analyzer).servicePorts},
	{PartRest, (*analyzer).egress},
}

// AnalyzeParts returns the findings of the checks of parts about c,
// sorted.
func AnalyzeParts(c *model.Config, parts Part) []Finding {
	a := newAnalyzer(c)
	for _, ch := range checks {
		if ch.part&parts != 0 {
			ch.run(a)
		}
	}
	Sort(a.findings)
	return a.findings
}

// Attachment is a route's parentRef attached to a listener of a Gateway
// or ListenerSet: what a Gateway's status counts as attachedRoutes.
type Attachment struct {
	Route Resource
	// ParentRef is the index of the route's parentRef.
	ParentRef int
	// Listener is the Gateway or ListenerSet that owns the listener, and
	// ListenerIndex its index in spec.listeners.
	Listener      Resource
	ListenerIndex int
}

// Attachments returns the listeners every route's parentRefs attach to,
// by the rules the route checks judge them with, in the order of the
// routes in c.
func Attachments(c *model.Config) []Attachment {
	a := newAnalyzer(c)
	a.gateways()
	a.routes()
	return a.attachedTo
}

// analyzer holds the indexes the checks share.
type analyzer struct {
	c  *model.Config
	ix *model.Index

	classes      map[string]*model.GatewayClass
	gws          map[model.Key]*model.Gateway
	listenerSets map[model.Key]*model.ListenerSet
	// attached are the listener sets attached to each Gateway.
	attached map[model.Key][]*model.ListenerSet
	// attachments are the places each HTTPRoute rule match serves, for the
	// precedence checks.
	attachments []attachment
	// attachedTo are the listeners each route parentRef attached to.
	attachedTo []Attachment
	// l4 are the places each TLSRoute and TCPRoute serves, for the
	// precedence checks.
	l4 []l4Attachment

	findings []Finding
}

func newAnalyzer(c *model.Config) *analyzer {
	a := &analyzer{
		c:            c,
		ix:           model.NewIndex(c),
		classes:      map[string]*model.GatewayClass{},
		gws:          map[model.Key]*model.Gateway{},
		listenerSets: map[model.Key]*model.ListenerSet{},
		attached:     map[model.Key][]*model.ListenerSet{},
	}
	for _, gc := range c.GatewayClasses {
		a.classes[gc.Name] = gc
	}
	for _, g := range c.Gateways {
		a.gws[g.Key] = g
	}
	for _, ls := range c.ListenerSets {
		a.listenerSets[ls.Key] = ls
	}
	return a
}

// resource names the resource a model object came from.
func resource(s model.Source) Resource {
	return Resource{Kind: s.Kind, Namespace: s.Namespace, Name: s.Name}
}

// add records a finding of code about res at field.
func (a *analyzer) add(code string, res Resource, field, format string, args ...any) {
	c, ok := Lookup(code)
	if !ok {
		panic("analyze: unknown code " + code)
	}
	a.findings = append(a.findings, Finding{
		Code: code, Severity: c.Severity, Resource: res, Field: field,
		Message: fmt.Sprintf(format, args...), Hint: c.Hint,
	})
}

// granted reports whether an object of kind from in namespace fromNS may
// reference to.
func (a *analyzer) granted(from model.GroupKind, fromNS string, to model.Ref) bool {
	return a.ix.Granted(from, fromNS, to)
}

func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }
