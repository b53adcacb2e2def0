package publish

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/roam-dev/roam/agent/state"
)

// flakyWriter records the states written and fails while down is set.
type flakyWriter struct {
	mu       sync.Mutex
	down     bool
	attempts int
	written  []state.State
	notify   chan struct{}
}

func (w *flakyWriter) Write(_ context.Context, s state.State) error {
	w.mu.Lock()
	defer func() {
		w.mu.Unlock()
		w.notify <- struct{}{}
	}()
	w.attempts++
	if w.down {
		return errors.New("connection refused")
	}
	w.written = append(w.written, s)
	return nil
}

func (w *flakyWriter) snapshot() (attempts int, written []state.State) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.attempts, append([]state.State(nil), w.written...)
}

// waitTimer waits until the publisher waits on a timer of the fake clock.
func waitTimer(t *testing.T, fc *clocktesting.FakeClock) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !fc.HasWaiters() {
		if time.Now().After(deadline) {
			t.Fatal("publisher never waited on the clock")
		}
		time.Sleep(time.Millisecond)
	}
}

func waitAttempt(t *testing.T, w *flakyWriter) {
	t.Helper()
	select {
	case <-w.notify:
	case <-time.After(30 * time.Second):
		t.Fatal("no write attempt")
	}
}

func TestPublisherRetriesWithBackoffAndLatestWins(t *testing.T) {
	fc := clocktesting.NewFakeClock(t0)
	w := &flakyWriter{notify: make(chan struct{}, 100)}
	var kinds []Kind
	p := New(w, Options{Limits: DefaultLimits(), Clock: fc, OnWrite: func(k Kind) { kinds = append(kinds, k) }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()

	p.Update(st("hospital", 0, 0, 80))
	waitAttempt(t, w) // the first state is written at once

	// The API server goes away; a context change is tried after the
	// debounce, then again after 250 ms, 500 ms, 1 s…
	w.mu.Lock()
	w.down = true
	w.mu.Unlock()
	p.Update(st("store", 0, 0, 80))
	waitTimer(t, fc)
	fc.Step(DefaultLimits().Debounce)
	waitAttempt(t, w)
	for _, backoff := range []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second} {
		waitTimer(t, fc)
		fc.Step(backoff - time.Millisecond)
		select {
		case <-w.notify:
			t.Fatalf("retried before the %v backoff", backoff)
		case <-time.After(20 * time.Millisecond):
		}
		fc.Step(time.Millisecond)
		waitAttempt(t, w)
	}
	// A newer state arrives while it is down; it does not skip the backoff.
	p.Update(st("warehouse", 7, 7, 60))
	waitTimer(t, fc)
	w.mu.Lock()
	w.down = false
	w.mu.Unlock()
	fc.Step(2 * time.Second)
	waitAttempt(t, w)

	attempts, written := w.snapshot()
	if attempts != 6 || len(written) != 2 {
		t.Fatalf("%d attempts, %d written; want 6 and 2", attempts, len(written))
	}
	if got := written[1]; got.Context != "warehouse" || got.Location.X != 7 || *got.Battery != 60 {
		t.Errorf("on reconnection wrote %+v, want the newest state", got)
	}
	if pub, ok := p.Published(); !ok || !pub.Equal(written[1]) {
		t.Errorf("Published() = %+v", pub)
	}
	cancel()
	<-done
	if len(kinds) != 2 || kinds[0] != KindLabels || kinds[1] != KindLabels {
		t.Errorf("write kinds %v", kinds)
	}
}
