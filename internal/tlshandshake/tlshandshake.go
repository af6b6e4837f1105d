// Package tlshandshake measures and checks TLS handshakes over real
// sockets: Serve answers each connection with a server handshake and one
// byte, Dial makes a connection, a client handshake with a given key
// exchange, and reads that byte, so that the client knows the server
// verified it too. The CA benchmark (bench/ca) and the mesh TLS
// configuration's tests use it.
package tlshandshake

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
)

// Serve accepts connections on ln until it closes: each gets a server
// handshake with conf, then one byte.
func Serve(ln net.Listener, conf *tls.Config) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			tc := tls.Server(c, conf)
			if tc.Handshake() == nil {
				_, _ = tc.Write([]byte{1})
			}
		}()
	}
}

// Dial makes one new connection to addr: TCP, a TLS handshake with conf
// that must agree on the key exchange want, and the server's byte.
func Dial(addr string, conf *tls.Config, want tls.CurveID) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	tc := tls.Client(c, conf)
	if err := tc.Handshake(); err != nil {
		return err
	}
	if got := tc.ConnectionState().CurveID; got != want {
		return errors.New("key exchange is " + got.String() + ", not " + want.String())
	}
	var b [1]byte
	_, err = io.ReadFull(tc, b[:])
	return err
}
