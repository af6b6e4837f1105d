package kubetest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A container's output (stdout and stderr, in the order written) goes to
// two files in its pod's directory: NAME.log as written (Node.Log reads
// it), and NAME.log.ts with a time per line, as a CRI runtime keeps it,
// from which the kubelet API serves pods/log with sinceTime, sinceSeconds
// and timestamps:
//
//	2026-11-26T10:14:06.123456789Z F a whole line
//	2026-11-26T10:14:06.123456790Z P the start of a line not yet ended

// containerLog writes a container's output to its two log files.
type containerLog struct {
	mu      sync.Mutex
	raw, ts *os.File
	mirror  bool // also to the test's stderr (TRELLIS_TEST_LOGS)
}

func openContainerLog(path string) (*containerLog, error) {
	raw, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	ts, err := os.OpenFile(path+".ts", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		raw.Close()
		return nil, err
	}
	return &containerLog{raw: raw, ts: ts, mirror: os.Getenv("TRELLIS_TEST_LOGS") != ""}, nil
}

func (l *containerLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.raw.Write(p); err != nil {
		return 0, err
	}
	if l.mirror {
		os.Stderr.Write(p)
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	var b bytes.Buffer
	for rest := p; len(rest) > 0; {
		line, after, whole := bytes.Cut(rest, []byte("\n"))
		tag := "F"
		if !whole {
			tag = "P"
		}
		fmt.Fprintf(&b, "%s %s %s\n", now, tag, line)
		rest = after
	}
	if _, err := l.ts.Write(b.Bytes()); err != nil {
		return 0, err
	}
	return len(p), nil
}

// logLine is a line of NAME.log.ts, ended or not.
type logLine struct {
	time  time.Time
	text  string
	ended bool
}

func parseLogLine(s string) (logLine, bool) {
	ts, rest, ok1 := strings.Cut(s, " ")
	tag, text, ok2 := strings.Cut(rest, " ")
	t, err := time.Parse(time.RFC3339Nano, ts)
	if !ok1 || !ok2 || err != nil || (tag != "F" && tag != "P") {
		return logLine{}, false
	}
	return logLine{time: t, text: text, ended: tag == "F"}, true
}

// logOptions are pods/log's query parameters that the node serves.
type logOptions struct {
	follow, timestamps bool
	since              time.Time
	tailLines          int // -1: all
	limitBytes         int64
}

func parseLogOptions(q map[string][]string) (logOptions, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	o := logOptions{follow: get("follow") == "true", timestamps: get("timestamps") == "true", tailLines: -1, limitBytes: -1}
	if get("previous") == "true" {
		return o, errors.New("previous: the logs of previous containers are not kept here")
	}
	if v := get("sinceTime"); v != "" {
		var t metav1.Time
		if err := t.UnmarshalQueryParameter(v); err != nil {
			return o, fmt.Errorf("sinceTime %q: %w", v, err)
		}
		o.since = t.Time
	}
	if v := get("sinceSeconds"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return o, fmt.Errorf("sinceSeconds %q: a positive number of seconds", v)
		}
		o.since = time.Now().Add(-time.Duration(n) * time.Second)
	}
	if v := get("tailLines"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return o, fmt.Errorf("tailLines %q: a number of lines", v)
		}
		o.tailLines = n
	}
	if v := get("limitBytes"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return o, fmt.Errorf("limitBytes %q: a positive number of bytes", v)
		}
		o.limitBytes = n
	}
	return o, nil
}

// format writes a line as pods/log shows it.
func (o *logOptions) format(w *bytes.Buffer, l logLine) {
	if o.timestamps {
		w.WriteString(l.time.Format(time.RFC3339Nano))
		w.WriteByte(' ')
	}
	w.WriteString(l.text)
	if l.ended {
		w.WriteByte('\n')
	}
}

// serveLogs serves a container's log (pods/log).
func (n *Node) serveLogs(w http.ResponseWriter, req *http.Request) {
	ns, pod, container := req.PathValue("ns"), req.PathValue("pod"), req.PathValue("container")
	o, err := parseLogOptions(req.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var uid string
	running := n.podRunByName(ns, pod, "")
	if running != nil {
		uid = string(running.pod.UID)
	} else {
		p, err := n.cs.CoreV1().Pods(ns).Get(req.Context(), pod, metav1.GetOptions{})
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		uid = string(p.UID)
	}
	f, err := os.Open(filepath.Join(n.dir, uid, container+".log.ts"))
	if err != nil {
		http.Error(w, fmt.Sprintf("container %q in pod %s/%s has no log: %v", container, ns, pod, err), http.StatusNotFound)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "text/plain")
	flusher, _ := w.(http.Flusher)
	br := bufio.NewReader(f)
	var pending string // a line read up to EOF, not yet ended by a newline
	next := func() (logLine, bool) {
		for {
			s, err := br.ReadString('\n')
			pending += s
			if err != nil {
				return logLine{}, false
			}
			l, ok := parseLogLine(strings.TrimSuffix(pending, "\n"))
			pending = ""
			if ok && !l.time.Before(o.since) {
				return l, true
			}
		}
	}
	// What is there now, cut to the last tailLines lines.
	var lines []logLine
	for l, ok := next(); ok; l, ok = next() {
		lines = append(lines, l)
	}
	if o.tailLines >= 0 {
		ended := 0
		for i := len(lines) - 1; i >= 0; i-- {
			if lines[i].ended {
				if ended == o.tailLines {
					lines = lines[i+1:]
					break
				}
				ended++
			}
		}
	}
	written := int64(0)
	send := func(ls []logLine) bool {
		var b bytes.Buffer
		for _, l := range ls {
			o.format(&b, l)
		}
		out := b.Bytes()
		if o.limitBytes >= 0 && written+int64(len(out)) > o.limitBytes {
			out = out[:o.limitBytes-written]
		}
		k, err := w.Write(out)
		written += int64(k)
		if flusher != nil {
			flusher.Flush()
		}
		return err == nil && (o.limitBytes < 0 || written < o.limitBytes)
	}
	if !send(lines) || !o.follow {
		return
	}
	for {
		var more []logLine
		for l, ok := next(); ok; l, ok = next() {
			more = append(more, l)
		}
		if len(more) > 0 && !send(more) {
			return
		}
		if running != nil {
			select {
			case <-running.stopped:
				return
			default:
			}
		}
		select {
		case <-req.Context().Done():
			return
		case <-n.ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

var _ io.Writer = (*containerLog)(nil)

// Close closes the files, once the container has exited.
func (l *containerLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return errors.Join(l.raw.Close(), l.ts.Close())
}
