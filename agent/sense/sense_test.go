package sense

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roam-dev/roam/agent/state"
)

// recorder is a Sink that keeps what it was given.
type recorder struct {
	mu      sync.Mutex
	states  []state.State
	invalid []error
	changed chan struct{}
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{}, 100)} }

func (r *recorder) State(_ Source, s state.State) {
	r.mu.Lock()
	r.states = append(r.states, s)
	r.mu.Unlock()
	r.changed <- struct{}{}
}

func (r *recorder) Invalid(_ Source, err error) {
	r.mu.Lock()
	r.invalid = append(r.invalid, err)
	r.mu.Unlock()
	r.changed <- struct{}{}
}

// waitFor waits (generously) until cond holds on the recorder.
func (r *recorder) waitFor(t *testing.T, what string, cond func(states []state.State, invalid []error) bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		r.mu.Lock()
		ok := cond(r.states, r.invalid)
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.changed:
		case <-deadline:
			r.mu.Lock()
			defer r.mu.Unlock()
			t.Fatalf("timed out waiting for %s; states %+v, errors %v", what, r.states, r.invalid)
		}
	}
}

func lastContext(states []state.State) string {
	if len(states) == 0 {
		return ""
	}
	return states[len(states)-1].Context
}

func TestFileWatcher(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run", "roam") // created by the watcher
	path := filepath.Join(dir, "state.yaml")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := newRecorder()
	done := make(chan error, 1)
	go func() { done <- (&FileWatcher{Path: path}).Run(ctx, rec) }()
	waitDir(t, dir)

	// An in-place write.
	if err := os.WriteFile(path, []byte("context: hospital\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "the written state", func(s []state.State, _ []error) bool { return lastContext(s) == "hospital" })

	// An atomic rename over the file.
	tmp := filepath.Join(dir, ".state.yaml.tmp")
	if err := os.WriteFile(tmp, []byte(`{"context": "store", "location": "1,2"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "the renamed state", func(s []state.State, _ []error) bool { return lastContext(s) == "store" })

	// Invalid content is reported with its field, and no state follows.
	if err := os.WriteFile(path, []byte("context: store\nbattery: 140\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "the invalid file to be reported", func(_ []state.State, errs []error) bool { return len(errs) > 0 })
	rec.mu.Lock()
	var fe *state.FieldError
	if !errors.As(rec.invalid[0], &fe) || fe.Field != "battery" || !strings.Contains(rec.invalid[0].Error(), path) {
		t.Errorf("invalid file reported as %v, want a battery field error naming the file", rec.invalid[0])
	}
	n := len(rec.states)
	rec.mu.Unlock()

	// Removing the file keeps the last state; a new file is read again.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("context: warehouse\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "the recreated file", func(s []state.State, _ []error) bool { return lastContext(s) == "warehouse" })
	rec.mu.Lock()
	if len(rec.states) != n+1 {
		t.Errorf("states after the invalid file: %+v, want only the recreated one", rec.states[n:])
	}
	rec.mu.Unlock()

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestFileWatcherReadsExistingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	if err := os.WriteFile(path, []byte(`{"context":"hospital"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := newRecorder()
	go func() { _ = (&FileWatcher{Path: path}).Run(ctx, rec) }()
	rec.waitFor(t, "the existing file", func(s []state.State, _ []error) bool { return lastContext(s) == "hospital" })
}

func waitDir(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(dir); err == nil {
			// A write from now on is seen: either by the watch, or by the
			// read the watcher makes once the watch is in place.
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never created", dir)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// unixClient talks HTTP over the unix socket at path.
func unixClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}, Timeout: 30 * time.Second}
}

func put(t *testing.T, c *http.Client, url string, body []byte) (int, ErrorBody) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var eb ErrorBody
	if resp.StatusCode == http.StatusBadRequest {
		if err := json.NewDecoder(resp.Body).Decode(&eb); err != nil {
			t.Fatalf("400 body: %v", err)
		}
	}
	return resp.StatusCode, eb
}

func TestHTTPOnUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "agent.sock")
	// A stale socket from a previous run is replaced.
	if err := os.WriteFile(sock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := Listen("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rec := newRecorder()
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, l, NewHandler(rec)) }()
	c := unixClient(sock)
	url := "http://agent/v1/state"

	if code, _ := put(t, c, url, []byte(`{"context":"hospital","location":{"x":1,"y":2},"battery":50}`)); code != http.StatusNoContent {
		t.Fatalf("valid PUT: %d", code)
	}
	rec.waitFor(t, "the PUT state", func(s []state.State, _ []error) bool { return lastContext(s) == "hospital" })

	for _, c2 := range []struct {
		name, body, field string
	}{
		{"location NaN", `{"location":"NaN,1"}`, "location"},
		{"bad context", `{"context":"no spaces allowed"}`, "context"},
		{"foreign label", `{"labels":{"example.com/x":"y"}}`, `labels["example.com/x"]`},
		{"battery", `{"battery":-1}`, "battery"},
		{"malformed", `{"context":`, ""},
		{"too big", `{"annotations":{"roam.dev/big":"` + strings.Repeat("x", state.MaxSize) + `"}}`, ""},
	} {
		code, eb := put(t, c, url, []byte(c2.body))
		if code != http.StatusBadRequest || eb.Field != c2.field || eb.Reason == "" {
			t.Errorf("%s: %d %+v, want 400 naming field %q", c2.name, code, eb, c2.field)
		}
	}
	rec.mu.Lock()
	if len(rec.states) != 1 || len(rec.invalid) != 6 {
		t.Errorf("after bad PUTs: %d states, %d errors; want 1 and 6", len(rec.states), len(rec.invalid))
	}
	rec.mu.Unlock()

	// GET returns the last good state.
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if got["context"] != "hospital" {
		t.Errorf("GET /v1/state = %v", got)
	}
	resp, err = c.Post(url, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405", resp.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestListenTCPOnlyOnLoopback(t *testing.T) {
	for _, addr := range []string{"tcp://0.0.0.0:0", "tcp://10.1.2.3:0", "tcp://example.com:80", "http://127.0.0.1:1", "relative.sock"} {
		if l, err := Listen(addr); err == nil {
			_ = l.Close()
			t.Errorf("Listen(%q) accepted", addr)
		}
	}
	l, err := Listen("tcp://127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := newRecorder()
	go func() { _ = Serve(ctx, l, NewHandler(rec)) }()
	if code, _ := put(t, http.DefaultClient, "http://"+l.Addr().String()+"/v1/state", []byte("context: store\n")); code != http.StatusNoContent {
		t.Fatalf("YAML PUT over TCP: %d", code)
	}
	rec.waitFor(t, "the TCP state", func(s []state.State, _ []error) bool { return lastContext(s) == "store" })
}
