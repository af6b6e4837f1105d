package proxy

import (
	"errors"
	"io"
	"strings"
	"testing"
)

// Every reader of a body kept within the limit reads all of it, whoever
// read from the client first; past the limit, only the front reader can
// go on.
func TestRequestBodyReaders(t *testing.T) {
	const text = "0123456789abcdefghij"
	b := newRequestBody(io.NopCloser(strings.NewReader(text)), 64)
	r1 := b.reader()
	buf := make([]byte, 5)
	if n, _ := r1.Read(buf); string(buf[:n]) != "01234" {
		t.Fatalf("first read %q", buf[:n])
	}
	var done bool
	b.whenRead(func() { done = true })
	r2 := b.reader()
	all, err := io.ReadAll(r2)
	if err != nil || string(all) != text {
		t.Fatalf("second reader: %q, %v", all, err)
	}
	if !done {
		t.Error("whenRead did not run at the end of the body")
	}
	rest, err := io.ReadAll(r1)
	if err != nil || string(rest) != text[5:] {
		t.Fatalf("first reader's rest: %q, %v", rest, err)
	}
	if got, ok := b.complete(); !ok || string(got) != text || !b.replayable() {
		t.Errorf("complete = %q, %v", got, ok)
	}

	b = newRequestBody(io.NopCloser(strings.NewReader(text)), 8)
	r1 = b.reader()
	buf = make([]byte, 10)
	io.ReadFull(r1, buf)
	if b.replayable() {
		t.Error("a body past the limit is replayable")
	}
	if _, err := b.reader().Read(buf); !errors.Is(err, errBodyNotReplayable) {
		t.Errorf("a new reader past the limit: %v", err)
	}
	if rest, err := io.ReadAll(r1); err != nil || string(rest) != text[10:] {
		t.Errorf("the front reader goes on: %q, %v", rest, err)
	}
	if _, ok := b.complete(); ok {
		t.Error("a body past the limit is complete")
	}

	b = newRequestBody(nil, 8)
	ran := false
	b.whenRead(func() { ran = true })
	if !ran || b.reader() != nil {
		t.Error("no body: whenRead must run at once and reader be nil")
	}
}
