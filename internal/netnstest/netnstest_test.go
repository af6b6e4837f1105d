package netnstest

import (
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// TestListenAndDial: a listener made in one namespace is reached from
// another over the bridge, by the namespace's address, and not from the
// test's own namespace; the namespaces are gone at the end.
func TestListenAndDial(t *testing.T) {
	n := New(t)
	server, serverIP := n.Add("server")
	client, _ := n.Add("client")
	ln, err := Listen(server, "tcp", net.JoinHostPort(serverIP, "7000"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "hello from "+server)
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dialer(client)(ctx, "tcp", net.JoinHostPort(serverIP, "7000"))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(c)
	c.Close()
	if string(got) != "hello from "+server {
		t.Errorf("read %q", got)
	}
	// (This sandbox may answer connections to any address on the host
	// itself; what answers there is not the server.)
	short, cancel2 := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel2()
	if c, err := (&net.Dialer{}).DialContext(short, "tcp", net.JoinHostPort(serverIP, "7000")); err == nil {
		c.SetDeadline(time.Now().Add(500 * time.Millisecond))
		got, _ := io.ReadAll(c)
		c.Close()
		if string(got) == "hello from "+server {
			t.Error("the test's own namespace reached the server, whose address exists only in the namespaces")
		}
	}
}

// TestSibling: two subnets joined only by a namespace attached to both;
// the other namespaces of one cannot reach the other's.
func TestSibling(t *testing.T) {
	n := New(t)
	n2 := n.Sibling()
	if n2.Subnet == n.Subnet {
		t.Fatalf("both nets are on %s", n.Subnet)
	}
	a, _ := n.Add("a")
	b, bIP := n2.Add("b")
	gw, _ := n.Add("gw")
	n2.Attach(gw)
	ln, err := Listen(b, "tcp", net.JoinHostPort(bIP, "7000"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "b")
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dialer(gw)(ctx, "tcp", net.JoinHostPort(bIP, "7000"))
	if err != nil {
		t.Fatalf("from the namespace on both subnets: %v", err)
	}
	c.Close()
	short, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel2()
	if c, err := Dialer(a)(short, "tcp", net.JoinHostPort(bIP, "7000")); err == nil {
		c.Close()
		t.Error("a namespace of the first subnet reached the second")
	}
}
