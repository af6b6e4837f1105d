package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"trellis.dev/trellis/internal/nodemeta"
)

// TestOpaqueTCP sends a server-first protocol (the server speaks first, as
// MySQL and SMTP do) through a client sidecar's outbound listener and the
// server sidecar's mesh port: bytes pass unchanged both ways, and a
// half-close reaches the server.
func TestOpaqueTCP(t *testing.T) {
	s := newSubnet(t)
	cp := startControlPlane(t, s, t.TempDir())
	cp.apply(t, `
apiVersion: v1
kind: Service
metadata: {name: db, namespace: demo}
spec:
  selector: {app: db}
  ports: [{name: tcp, port: 5432, targetPort: 15432}]
`)
	dbIP, clientIP := s.ip(21), s.ip(22)
	ln, err := net.Listen("tcp", net.JoinHostPort(dbIP, "15432"))
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
			go func() {
				defer c.Close()
				fmt.Fprintf(c, "220 db ready\n")
				// Echo upper-cased until the client half-closes, then say
				// goodbye: only possible if the half-close came through.
				data, _ := io.ReadAll(c)
				fmt.Fprintf(c, "%s\nbye\n", strings.ToUpper(string(data)))
			}()
		}
	}()
	startProxy(t, cp, nodemeta.Metadata{
		Kind: nodemeta.KindSidecar, Name: "db-1", Namespace: "demo", ServiceAccount: "db",
		Address: dbIP, AppAddress: dbIP, MeshPort: 15008, Labels: map[string]string{"app": "db"},
		Ports: []nodemeta.Port{{Name: "tcp", Port: 15432, Protocol: "TCP"}},
	})
	startProxy(t, cp, nodemeta.Metadata{
		Kind: nodemeta.KindSidecar, Name: "client-1", Namespace: "demo", ServiceAccount: "client",
		Address: clientIP, OutboundAddress: clientIP, MeshPort: 15008,
		Upstreams: []nodemeta.Upstream{{Service: "db", Port: 5432, LocalPort: 5432}},
	})

	local := net.JoinHostPort(clientIP, "5432")
	eventually(t, 30*time.Second, "db reachable through the sidecars", func() error {
		c, err := net.DialTimeout("tcp", local, time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		banner, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return err
		}
		if banner != "220 db ready\n" {
			return fmt.Errorf("banner %q", banner)
		}
		return nil
	})

	c, err := net.Dial("tcp", local)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	payload := strings.Repeat("select 1; ", 10000) // 100 kB, more than one TLS record
	if _, err := io.WriteString(c, payload); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	want := "220 db ready\n" + strings.ToUpper(payload) + "\nbye\n"
	if string(got) != want {
		t.Fatalf("got %d bytes (%.60q...), want %d bytes", len(got), got, len(want))
	}
}
