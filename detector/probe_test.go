package detector

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"
)

// gateLog records what a probe tells the Core.
type gateLog struct {
	mu    sync.Mutex
	calls []string
}

func (g *gateLog) SourceInterrupted(now time.Time) { g.add("interrupted", now) }
func (g *gateLog) SourceResumed(now time.Time)     { g.add("resumed", now) }

func (g *gateLog) add(what string, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls = append(g.calls, fmt.Sprintf("%s@%s", what, now.Sub(time.Unix(0, 0))))
}

func (g *gateLog) take() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	c := g.calls
	g.calls = nil
	return c
}

// probeClock is a fake clock that says when the probe sleeps between
// probes (After) and when it arms a probe's timeout (NewTimer).
type probeClock struct {
	*clocktesting.FakeClock
	sleeping, timing chan struct{}
}

func (c *probeClock) After(d time.Duration) <-chan time.Time {
	ch := c.FakeClock.After(d)
	c.sleeping <- struct{}{}
	return ch
}

func (c *probeClock) NewTimer(d time.Duration) clock.Timer {
	t := c.FakeClock.NewTimer(d)
	c.timing <- struct{}{}
	return t
}

// The probe marks the source interrupted at every failure — a refused
// connection and a probe that hangs past its timeout alike — and never
// resumes it on a mere answer; only when the API server has answered for
// ProbeResumeFallback (and nothing else resumed the source) does it end
// the interruption itself.
func TestProbeInterruptsAndFallsBack(t *testing.T) {
	cfg := ProbeConfig{Interval: 500 * time.Millisecond, Timeout: time.Second}
	clk := &probeClock{FakeClock: clocktesting.NewFakeClock(time.Unix(0, 0)),
		sleeping: make(chan struct{}, 16), timing: make(chan struct{}, 16)}
	invoked, results := make(chan struct{}, 16), make(chan error)
	check := func(ctx context.Context) error {
		invoked <- struct{}{}
		select {
		case err := <-results:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	gate := &gateLog{}
	p, err := NewProbe(cfg, check, gate, clk)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	// probe runs one probe answered with result (hang: never answered,
	// so it fails at its timeout), waits until the probe sleeps, and
	// returns what it told the gate.
	probe := func(result error, hang bool) []string {
		t.Helper()
		<-invoked
		<-clk.timing
		if hang {
			clk.Step(cfg.Timeout)
		} else {
			results <- result
		}
		<-clk.sleeping
		calls := gate.take()
		clk.Step(cfg.Interval)
		return calls
	}
	expect := func(what string, got []string, want ...string) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: told the Core %v, want %v", what, got, want)
		}
	}
	expect("answered", probe(nil, false))
	expect("connection refused", probe(errors.New("connection refused"), false), "interrupted@500ms")
	expect("no answer", probe(nil, true), "interrupted@2s")
	// Answers again at 2.5 s: the stream's own delivery ends the
	// interruption; the probe waits for the fallback.
	for now := 2500 * time.Millisecond; now < 2500*time.Millisecond+ProbeResumeFallback; now += cfg.Interval {
		if got := probe(nil, false); len(got) > 0 {
			t.Fatalf("at %s, the API server answering for %s: told the Core %v, want nothing before %s",
				now, now-2500*time.Millisecond, got, ProbeResumeFallback)
		}
	}
	expect("answering for the fallback", probe(nil, false), fmt.Sprintf("resumed@%s", 2500*time.Millisecond+ProbeResumeFallback))
	expect("answering after the fallback", probe(nil, false))
	expect("failing again", probe(errors.New("connection refused"), false),
		fmt.Sprintf("interrupted@%s", 2500*time.Millisecond+ProbeResumeFallback+2*cfg.Interval))
}

func TestProbeConfigValidate(t *testing.T) {
	for _, bad := range []ProbeConfig{{Interval: -time.Second, Timeout: time.Second}, {Interval: time.Second}, {Interval: time.Second, Timeout: -1}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	for _, good := range []ProbeConfig{{}, DefaultProbeConfig()} {
		if err := good.Validate(); err != nil {
			t.Errorf("%+v: %v", good, err)
		}
	}
	// Off: Run returns at once.
	p, err := NewProbe(ProbeConfig{}, func(context.Context) error { return errors.New("must not run") }, &gateLog{}, clocktesting.NewFakeClock(time.Unix(0, 0)))
	if err != nil {
		t.Fatal(err)
	}
	p.Run(context.Background())
}
