package heartbeat

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/roam-dev/roam/internal/heartbeat/wire"
)

// seeded is a deterministic random source for session ids and keys.
type seeded struct{ r *rand.ChaCha8 }

func (s seeded) Read(p []byte) (int, error) { return s.r.Read(p) }

func newTestSessions(ttl time.Duration) (*Sessions, *clocktesting.FakeClock) {
	clk := clocktesting.NewFakeClock(time.Unix(1_000_000, 0))
	return NewSessions(clk, ttl, seeded{rand.NewChaCha8([32]byte{7})}), clk
}

func heartbeat(ses Session, seq uint64) []byte {
	return wire.NewMAC(ses.Key).Append(nil, wire.Datagram{Kind: wire.KindHeartbeat, Session: ses.ID, Seq: seq, AgentTime: int64(seq)})
}

func TestSessionsAcceptOnlyAuthenticNewHeartbeats(t *testing.T) {
	s, clk := newTestSessions(time.Minute)
	a, err := s.Issue("robot-a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Issue("robot-b")
	if err != nil {
		t.Fatal(err)
	}
	now := clk.Now()
	open := func(p []byte) (string, wire.DropReason) {
		node, _, r := s.Open(p, now)
		return node, r
	}
	if node, r := open(heartbeat(a, 1)); r != wire.DropNone || node != "robot-a" {
		t.Fatalf("robot-a's first heartbeat: node %q, %v", node, r)
	}
	if _, r := open(heartbeat(a, 1)); r != wire.DropReplay {
		t.Errorf("replayed heartbeat: %v, want replay", r)
	}
	// robot-b's key cannot speak for robot-a's session.
	forged := heartbeat(Session{ID: a.ID, Key: b.Key}, 2)
	if _, r := open(forged); r != wire.DropBadMAC {
		t.Errorf("heartbeat for robot-a's session under robot-b's key: %v, want bad_mac", r)
	}
	// A forged datagram does not advance the window: the genuine 2 passes.
	if node, r := open(heartbeat(a, 2)); r != wire.DropNone || node != "robot-a" {
		t.Errorf("robot-a's heartbeat 2 after a forgery: %q, %v", node, r)
	}
	var unknown Session
	unknown.ID[0] = 1
	if _, r := open(heartbeat(unknown, 1)); r != wire.DropUnknownSession {
		t.Errorf("unknown session: %v", r)
	}
	// An ack (the detector's own kind) sent to the detector.
	ack := wire.NewMAC(a.Key).Append(nil, wire.Datagram{Kind: wire.KindAck, Session: a.ID, Seq: 3})
	if _, r := open(ack); r != wire.DropWrongKind {
		t.Errorf("ack sent to the detector: %v, want wrong_kind", r)
	}
	// Sequences are per session.
	if node, r := open(heartbeat(b, 1)); r != wire.DropNone || node != "robot-b" {
		t.Errorf("robot-b's first heartbeat: %q, %v", node, r)
	}
}

func TestSessionsExpireAndRotate(t *testing.T) {
	s, clk := newTestSessions(time.Minute)
	first, _ := s.Issue("robot-a")
	clk.Step(30 * time.Second)
	second, _ := s.Issue("robot-a") // rotation: both valid
	for i, ses := range []Session{first, second} {
		if _, _, r := s.Open(heartbeat(ses, 1), clk.Now()); r != wire.DropNone {
			t.Errorf("session %d during rotation: %v", i, r)
		}
	}
	clk.Step(30 * time.Second) // the first expires
	if _, _, r := s.Open(heartbeat(first, 2), clk.Now()); r != wire.DropUnknownSession {
		t.Errorf("expired session: %v, want unknown_session", r)
	}
	if _, _, r := s.Open(heartbeat(second, 2), clk.Now()); r != wire.DropNone {
		t.Errorf("current session: %v", r)
	}
	if ended := s.Sweep(clk.Now()); len(ended) != 0 {
		t.Errorf("sweep ended %v while robot-a has a live session", ended)
	}
	if n := s.Len(); n != 1 {
		t.Errorf("%d sessions after the sweep, want 1", n)
	}
	// At most MaxSessionsPerNode: a third closes the oldest.
	third, _ := s.Issue("robot-a")
	fourth, _ := s.Issue("robot-a")
	if _, _, r := s.Open(heartbeat(second, 3), clk.Now()); r != wire.DropUnknownSession {
		t.Errorf("oldest of %d sessions: %v, want unknown_session", MaxSessionsPerNode+1, r)
	}
	for _, ses := range []Session{third, fourth} {
		if _, _, r := s.Open(heartbeat(ses, 1), clk.Now()); r != wire.DropNone {
			t.Errorf("newer session: %v", r)
		}
	}
	clk.Step(time.Minute)
	if ended := s.Sweep(clk.Now()); len(ended) != 1 || ended[0] != "robot-a" || s.Len() != 0 {
		t.Errorf("sweep after every session expired: ended %v, %d left; want [robot-a], 0", ended, s.Len())
	}
}

func TestAckCarriesTheHeartbeatAndVerifiesUnderTheKey(t *testing.T) {
	s, clk := newTestSessions(time.Minute)
	a, _ := s.Issue("robot-a")
	_, d, r := s.Open(heartbeat(a, 5), clk.Now())
	if r != wire.DropNone {
		t.Fatal(r)
	}
	ack, ok := s.AppendAck(nil, d)
	if !ok {
		t.Fatal("no ack for a live session")
	}
	got, err := wire.Peek(ack)
	if err != nil || got.Kind != wire.KindAck || got.Seq != 5 || got.AgentTime != 5 || got.Session != a.ID {
		t.Fatalf("ack %+v, %v", got, err)
	}
	if !wire.NewMAC(a.Key).Verify(ack) {
		t.Error("the ack does not verify under the session key")
	}
	if bytes.Equal(ack, heartbeat(a, 5)) {
		t.Error("the ack equals the heartbeat")
	}
}
