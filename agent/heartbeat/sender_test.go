package heartbeat

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/roam-dev/roam/internal/heartbeat/wire"
)

// A session answer the agent cannot use is refused with a reason, and the
// request carries the node and the token.
func TestSessionRequestAndAnswerChecked(t *testing.T) {
	answers := map[string]wire.SessionResponse{
		"short id":    {ID: make([]byte, 4), Key: make([]byte, wire.KeySize), TTLSeconds: 60, UDPPort: 9470},
		"short key":   {ID: make([]byte, wire.SessionIDSize), Key: make([]byte, 8), TTLSeconds: 60, UDPPort: 9470},
		"no port":     {ID: make([]byte, wire.SessionIDSize), Key: make([]byte, wire.KeySize), TTLSeconds: 60},
		"no lifetime": {ID: make([]byte, wire.SessionIDSize), Key: make([]byte, wire.KeySize), UDPPort: 9470},
		"good":        {ID: make([]byte, wire.SessionIDSize), Key: make([]byte, wire.KeySize), TTLSeconds: 60, UDPPort: 9470},
	}
	var answer wire.SessionResponse
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req wire.SessionRequest
		if r.URL.Path != wire.SessionPath || r.Header.Get("Authorization") != "Bearer tok" ||
			json.NewDecoder(r.Body).Decode(&req) != nil || req.Node != "robot-a" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		_ = json.NewEncoder(w).Encode(answer)
	}))
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	s, err := New(Options{Node: "robot-a", Replicas: Static(), RootCAs: pool, Token: func() (string, error) { return "tok", nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.conn.Close()
	addr := strings.TrimPrefix(srv.URL, "https://")
	for name, a := range answers {
		answer = a
		ses, err := s.request(context.Background(), addr)
		switch {
		case name == "good" && (err != nil || ses.udp.Port() != 9470 || ses.udp.Addr().String() != "127.0.0.1"):
			t.Errorf("good answer: %+v, %v", ses, err)
		case name != "good" && err == nil:
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestNewRejectsMissingOptions(t *testing.T) {
	tok := func() (string, error) { return "", nil }
	for name, o := range map[string]Options{
		"no node":     {Replicas: Static("a:1"), Token: tok},
		"no replicas": {Node: "n", Token: tok},
		"no token":    {Node: "n", Replicas: Static("a:1")},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
