package heartbeat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"k8s.io/klog/v2"

	"github.com/roam-dev/roam/internal/heartbeat/wire"
)

// maxRequestBody bounds a session request (a node name is at most 253
// bytes).
const maxRequestBody = 4 << 10

// authTimeout bounds one TokenReview.
const authTimeout = 10 * time.Second

// Handler serves wire.SessionPath: it authenticates the agent and issues a
// session for the node its token proves. A failed or unreachable
// TokenReview refuses the new session and leaves every existing one alone.
type Handler struct {
	Auth     Authenticator
	Sessions *Sessions
	// UDPPort is reported to agents.
	UDPPort int
	// OnIssue is called for every issued session (metrics; may be nil).
	OnIssue func()
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	logger := klog.FromContext(r.Context())
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		http.Error(w, "missing Authorization: Bearer token (the agent's pod-bound ServiceAccount token)", http.StatusUnauthorized)
		return
	}
	var req wire.SessionRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody+1))
	if err == nil && len(body) > maxRequestBody {
		err = fmt.Errorf("body longer than %d bytes", maxRequestBody)
	}
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err != nil || req.Node == "" {
		if err == nil {
			err = errors.New(`"node" is empty`)
		}
		http.Error(w, fmt.Sprintf("bad session request: %v", err), http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), authTimeout)
	defer cancel()
	node, err := h.Auth.Authenticate(ctx, token)
	switch {
	case errors.Is(err, ErrUnauthenticated):
		logger.Info("Refused a heartbeat session", "node", req.Node, "remote", r.RemoteAddr, "err", err)
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	case err != nil:
		logger.Error(err, "Cannot authenticate a heartbeat session now", "node", req.Node)
		http.Error(w, "cannot authenticate now, retry later: "+err.Error(), http.StatusServiceUnavailable)
		return
	case node != req.Node:
		logger.Info("Refused a heartbeat session for another node", "node", req.Node, "tokenNode", node, "remote", r.RemoteAddr)
		http.Error(w, fmt.Sprintf("the token is bound to node %q, not %q", node, req.Node), http.StatusForbidden)
		return
	}
	ses, err := h.Sessions.Issue(node)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if h.OnIssue != nil {
		h.OnIssue()
	}
	logger.V(2).Info("Heartbeat session opened", "node", node, "remote", r.RemoteAddr)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(wire.SessionResponse{ID: ses.ID[:], Key: ses.Key[:], TTLSeconds: ses.TTL.Seconds(), UDPPort: h.UDPPort})
}
