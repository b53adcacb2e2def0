package lease

import (
	"path/filepath"
	"testing"
	"time"
)

var t0 = time.Unix(1000, 0)

func TestLeaseCountsFromTheSendTimeOfTheNewestAck(t *testing.T) {
	l, err := New(2*time.Second, t0)
	if err != nil {
		t.Fatal(err)
	}
	if s := l.State(); s.Expired(t0.Add(1999*time.Millisecond)) || !s.Expired(t0.Add(2*time.Second)) {
		t.Fatalf("a lease started at t0 with fenceAfter 2s: %+v", s)
	}
	// A heartbeat sent at +1s and acknowledged at +2.5s extends the lease
	// to +3s, not +4.5s.
	if !l.Acked(t0.Add(time.Second)) {
		t.Fatal("a newer acknowledgement did not extend the lease")
	}
	if s := l.State(); !s.Deadline.Equal(t0.Add(3 * time.Second)) {
		t.Fatalf("deadline %v, want t0+3s", s.Deadline.Sub(t0))
	}
	// An acknowledgement of an older heartbeat, arriving late, changes nothing.
	if l.Acked(t0.Add(500 * time.Millisecond)) {
		t.Fatal("an older heartbeat's acknowledgement extended the lease")
	}
	if s := l.State(); !s.Deadline.Equal(t0.Add(3 * time.Second)) {
		t.Fatalf("deadline moved to %v", s.Deadline.Sub(t0))
	}
	select {
	case <-l.Changed():
	default:
		t.Fatal("no change notified")
	}
}

func TestRevocationExpiresUntilANewerHeartbeatIsAcked(t *testing.T) {
	l, _ := New(2*time.Second, t0)
	l.Acked(t0.Add(time.Second))
	l.Revoke(t0.Add(1500 * time.Millisecond))
	if s := l.State(); !s.Expired(t0.Add(1500 * time.Millisecond)) {
		t.Fatalf("revoked lease not expired: %+v", s)
	}
	// The acknowledgement of a heartbeat sent before the revocation (it
	// was in flight) must not undo it.
	if l.Acked(t0.Add(1400 * time.Millisecond)) {
		t.Fatal("a heartbeat sent before the revocation extended the lease")
	}
	if !l.State().Revoked {
		t.Fatal("revocation undone")
	}
	if !l.Acked(t0.Add(1600*time.Millisecond)) || l.State().Expired(t0.Add(1700*time.Millisecond)) {
		t.Fatalf("a heartbeat sent after the revocation did not renew the lease: %+v", l.State())
	}
}

func TestNewRejectsNonPositive(t *testing.T) {
	if _, err := New(0, t0); err == nil {
		t.Fatal("New(0) accepted")
	}
}

func TestStoreSurvivesRestart(t *testing.T) {
	boot := 500 * time.Second
	s := Store{Path: filepath.Join(t.TempDir(), "fence-lease"), Boot: func() (time.Duration, error) { return boot, nil }}
	// First agent since boot: counts from its start.
	if got, err := s.Restore(t0); err != nil || !got.Equal(t0) {
		t.Fatalf("Restore without state = %v, %v; want now", got, err)
	}
	// The agent's clock reads t0 at boot time 500s; it saves an ack of a
	// heartbeat sent 300ms earlier.
	if err := s.Save(t0.Add(-300*time.Millisecond), t0); err != nil {
		t.Fatal(err)
	}
	// A new process, whose own clock has an unrelated origin, restarts 4s later.
	boot += 4 * time.Second
	t1 := time.Unix(77, 0)
	got, err := s.Restore(t1)
	if err != nil {
		t.Fatal(err)
	}
	if want := t1.Add(-4300 * time.Millisecond); !got.Equal(want) {
		t.Fatalf("Restore = t1%v, want t1-4.3s", got.Sub(t1))
	}
	if err := s.SaveRevoked(); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Restore(t1); err != nil || !got.IsZero() {
		t.Fatalf("Restore after a revocation = %v, %v; want the zero time (expired)", got, err)
	}
	l, _ := New(time.Second, time.Time{})
	if !l.State().Expired(t1) {
		t.Fatal("a lease restored after a revocation is not expired")
	}
}

func TestBootTimeAdvances(t *testing.T) {
	a, err := BootTime()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Millisecond)
	b, _ := BootTime()
	if b <= a {
		t.Fatalf("CLOCK_BOOTTIME went from %v to %v", a, b)
	}
}
