package sense

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/roam-dev/roam/agent/state"
)

// DefaultSocket is the unix socket the state endpoint listens on.
const DefaultSocket = "/run/roam/agent.sock"

// Handler serves the state endpoint:
//
//	PUT /v1/state   a state document (JSON or YAML, at most 64 KiB); 204 on
//	                success, 400 with {"field": …, "reason": …} otherwise
//	GET /v1/state   the newest valid state received over HTTP, as JSON
type Handler struct {
	sink Sink

	mu   sync.Mutex
	last *state.State
}

// NewHandler returns a handler that hands valid states to sink.
func NewHandler(sink Sink) *Handler {
	return &Handler{sink: sink}
}

// ErrorBody is the JSON body of a 400 response.
type ErrorBody struct {
	// Field is the offending field ("" for the document as a whole).
	Field string `json:"field"`
	// Reason says what is wrong with it.
	Reason string `json:"reason"`
	// Error is the full message.
	Error string `json:"error"`
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/state" {
		http.NotFound(w, r)
		return
	}
	switch r.Method {
	case http.MethodPut:
		h.put(w, r)
	case http.MethodGet:
		h.mu.Lock()
		last := h.last
		h.mu.Unlock()
		if last == nil {
			http.Error(w, "no state received over HTTP yet", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(last)
	default:
		w.Header().Set("Allow", "GET, PUT")
		http.Error(w, "method not allowed: use PUT to report the state, GET to read it", http.StatusMethodNotAllowed)
	}
}

func (h *Handler) put(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(io.LimitReader(r.Body, state.MaxSize+1))
	if err != nil {
		h.reject(w, &state.FieldError{Reason: "reading the body: " + err.Error()})
		return
	}
	s, err := state.Parse(data)
	if err != nil {
		h.reject(w, err)
		return
	}
	h.mu.Lock()
	h.last = &s
	h.mu.Unlock()
	h.sink.State(SourceHTTP, s)
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) reject(w http.ResponseWriter, err error) {
	h.sink.Invalid(SourceHTTP, err)
	body := ErrorBody{Reason: err.Error(), Error: err.Error()}
	var fe *state.FieldError
	if errors.As(err, &fe) {
		body.Field, body.Reason = fe.Field, fe.Reason
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(body)
}

// Listen opens the endpoint's listener. addr is a unix socket path
// ("unix:///run/roam/agent.sock" or an absolute path), or "tcp://host:port"
// where host must be a loopback address: the endpoint has no
// authentication, so it is only reachable from the robot itself.
func Listen(addr string) (net.Listener, error) {
	switch {
	case strings.HasPrefix(addr, "tcp://"):
		hostPort := strings.TrimPrefix(addr, "tcp://")
		host, _, err := net.SplitHostPort(hostPort)
		if err != nil {
			return nil, fmt.Errorf("state endpoint address %q: %w", addr, err)
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, fmt.Errorf("state endpoint address %q: TCP listens only on a loopback address (127.0.0.1, ::1, localhost)", addr)
		}
		l, err := net.Listen("tcp", hostPort)
		if err != nil {
			return nil, fmt.Errorf("state endpoint: %w", err)
		}
		return l, nil
	case strings.HasPrefix(addr, "unix://"), strings.HasPrefix(addr, "/"):
		path := strings.TrimPrefix(addr, "unix://")
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("state endpoint: %w", err)
		}
		// A socket left by a previous agent would make Listen fail.
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("state endpoint: removing stale socket: %w", err)
		}
		l, err := net.Listen("unix", path)
		if err != nil {
			return nil, fmt.Errorf("state endpoint: %w", err)
		}
		// Robot software runs under other users: anyone on the robot who
		// can reach the directory may report state.
		if err := os.Chmod(path, 0o666); err != nil {
			_ = l.Close()
			return nil, fmt.Errorf("state endpoint: %w", err)
		}
		return l, nil
	}
	return nil, fmt.Errorf("state endpoint address %q: want unix:///path, /path or tcp://127.0.0.1:port", addr)
}

// Serve serves h on l until ctx is done, then shuts down gracefully.
func Serve(ctx context.Context, l net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	klog.FromContext(ctx).Info("Serving the state endpoint", "address", l.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("state endpoint: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("state endpoint shutdown: %w", err)
	}
	return nil
}
