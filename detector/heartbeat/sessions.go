// Package heartbeat is roam-detector's end of direct heartbeats: agents
// open a session over HTTPS (proving their node with a ServiceAccount
// token bound to their pod, checked by TokenReview), then send MACed UDP
// datagrams (package internal/heartbeat/wire) that the Receiver verifies
// and hands to the detector's Core as heartbeats. The leading replica
// acknowledges each accepted heartbeat; standbys verify and record them
// too, so their phi windows are warm when they take over.
package heartbeat

import (
	"crypto/rand"
	"fmt"
	"io"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/roam-dev/roam/internal/heartbeat/wire"
)

// Defaults of the session table.
const (
	// DefaultSessionTTL: a session lives this long. The agent opens the
	// next one halfway through, so each agent costs the API server one
	// TokenReview per replica per half hour — negligible next to the
	// heartbeats it replaces.
	DefaultSessionTTL = time.Hour
	// MaxSessionsPerNode: the current session and the one it replaces,
	// so rotation never leaves a gap; a third closes the oldest.
	MaxSessionsPerNode = 2
)

// Session is what the detector hands an authenticated agent.
type Session struct {
	ID   wire.SessionID
	Key  wire.Key
	Node string
	// TTL is how long the session stays valid from its issue.
	TTL time.Duration
}

type entry struct {
	id      wire.SessionID
	node    string
	mac     *wire.MAC
	win     wire.Window
	expires time.Time // monotonic reading of the table's clock
}

// Sessions is the table of live sessions. It knows no Kubernetes client:
// existing sessions survive any API-server outage, and only their expiry
// ends them. Safe for concurrent use.
type Sessions struct {
	clock clock.PassiveClock
	ttl   time.Duration
	rand  io.Reader

	mu     sync.Mutex
	byID   map[wire.SessionID]*entry
	byNode map[string][]*entry // oldest first
}

// NewSessions returns an empty table whose sessions live ttl
// (DefaultSessionTTL when ≤ 0). random supplies session ids and keys (nil:
// crypto/rand; tests pass a seeded source).
func NewSessions(clk clock.PassiveClock, ttl time.Duration, random io.Reader) *Sessions {
	if ttl <= 0 {
		ttl = DefaultSessionTTL
	}
	if random == nil {
		random = rand.Reader
	}
	return &Sessions{clock: clk, ttl: ttl, rand: random, byID: map[wire.SessionID]*entry{}, byNode: map[string][]*entry{}}
}

// Issue opens a new session for node (whose identity the caller has
// verified). The node's older sessions stay valid until they expire, except
// that at most MaxSessionsPerNode are kept.
func (s *Sessions) Issue(node string) (Session, error) {
	ses := Session{Node: node, TTL: s.ttl}
	if _, err := io.ReadFull(s.rand, ses.ID[:]); err != nil {
		return Session{}, fmt.Errorf("session id: %w", err)
	}
	if _, err := io.ReadFull(s.rand, ses.Key[:]); err != nil {
		return Session{}, fmt.Errorf("session key: %w", err)
	}
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.byID[ses.ID]; dup {
		return Session{}, fmt.Errorf("session id collision (the random source repeats)")
	}
	e := &entry{id: ses.ID, node: node, mac: wire.NewMAC(ses.Key), expires: now.Add(s.ttl)}
	list := append(s.sweepNode(node, now), e)
	for len(list) > MaxSessionsPerNode {
		delete(s.byID, list[0].id)
		list = list[1:]
	}
	s.byNode[node] = list
	s.byID[ses.ID] = e
	return ses, nil
}

// Open verifies a received datagram: known, unexpired session, valid MAC,
// a heartbeat, and a sequence newer than the session's last. It returns
// the node and the decoded heartbeat, or why it was dropped.
func (s *Sessions) Open(p []byte, now time.Time) (string, wire.Datagram, wire.DropReason) {
	d, err := wire.Peek(p)
	if err != nil {
		return "", d, wire.Reason(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.byID[d.Session]
	if e == nil || !now.Before(e.expires) {
		return "", d, wire.DropUnknownSession
	}
	if d.Kind == wire.KindRehandshake || !e.mac.Verify(p) {
		return "", d, wire.DropBadMAC
	}
	if d.Kind != wire.KindHeartbeat {
		return "", d, wire.DropWrongKind
	}
	if !e.win.Accept(d.Seq) {
		return "", d, wire.DropReplay
	}
	return e.node, d, wire.DropNone
}

// AppendAck appends the acknowledgement of heartbeat d (as returned by
// Open) to buf; false when its session has gone meanwhile.
func (s *Sessions) AppendAck(buf []byte, d wire.Datagram) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.byID[d.Session]
	if e == nil {
		return buf, false
	}
	d.Kind = wire.KindAck
	return e.mac.Append(buf, d), true
}

// Sweep forgets the sessions expired at now and returns the nodes left
// without any: their robots are judged by their Lease again.
func (s *Sessions) Sweep(now time.Time) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ended []string
	for node := range s.byNode {
		if s.sweepNode(node, now) == nil {
			ended = append(ended, node)
		}
	}
	return ended
}

// sweepNode forgets node's sessions expired at now and returns the rest.
func (s *Sessions) sweepNode(node string, now time.Time) []*entry {
	list := s.byNode[node]
	kept := list[:0]
	for _, e := range list {
		if now.Before(e.expires) {
			kept = append(kept, e)
		} else {
			delete(s.byID, e.id)
		}
	}
	if len(kept) == 0 {
		delete(s.byNode, node)
		return nil
	}
	s.byNode[node] = kept
	return kept
}

// Len is the number of sessions held (expired ones count until swept).
func (s *Sessions) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID)
}

// TTL is the lifetime of new sessions.
func (s *Sessions) TTL() time.Duration { return s.ttl }
