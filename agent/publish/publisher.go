package publish

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/roam-dev/roam/agent/state"
)

// Writer writes a complete state into the Node. NodeApplier is the real
// one; the simulator and tests may count or wrap it.
type Writer interface {
	Write(ctx context.Context, s state.State) error
}

// Options configure a Publisher.
type Options struct {
	Limits Limits
	// Clock drives every decision (default: the real clock).
	Clock clock.WithTicker
	// MinBackoff and MaxBackoff bound the wait between failed writes
	// (defaults 250 ms and 30 s; it doubles on each failure).
	MinBackoff, MaxBackoff time.Duration
	// WriteTimeout bounds one write (default 10 s).
	WriteTimeout time.Duration
	// OnWrite, when set, is called after each successful write with its
	// kind (for metrics).
	OnWrite func(Kind)
}

// Publisher keeps the newest state and writes it through a Writer when its
// Planner says so. A failed write (say, the API server is unreachable) is
// retried with exponential backoff, always with the newest state, so on
// reconnection the latest state wins. Update never blocks.
type Publisher struct {
	w    Writer
	opts Options

	mu      sync.Mutex
	planner *Planner
	wake    chan struct{}
}

// New returns a Publisher writing through w.
func New(w Writer, opts Options) *Publisher {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.MinBackoff == 0 {
		opts.MinBackoff = 250 * time.Millisecond
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	if opts.WriteTimeout == 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	return &Publisher{w: w, opts: opts, planner: NewPlanner(opts.Limits), wake: make(chan struct{}, 1)}
}

// Update hands the publisher the newest state.
func (p *Publisher) Update(s state.State) {
	p.mu.Lock()
	p.planner.Observe(s, p.opts.Clock.Now())
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Desired returns the newest state handed to Update.
func (p *Publisher) Desired() state.State {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.planner.Desired()
}

// Published returns the last state written and whether any was.
func (p *Publisher) Published() (state.State, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.planner.Published()
}

// Run writes due states until ctx is done.
func (p *Publisher) Run(ctx context.Context) {
	clk := p.opts.Clock
	backoff := time.Duration(0)
	var retryAt time.Time
	for {
		now := clk.Now()
		p.mu.Lock()
		due, at, kind := p.planner.Next(now)
		s := p.planner.Desired()
		p.mu.Unlock()
		if due && !retryAt.IsZero() && now.Before(retryAt) {
			due, at = false, retryAt
		}
		if due {
			err := p.write(ctx, s)
			switch {
			case err == nil:
				p.mu.Lock()
				p.planner.Written(s, clk.Now())
				p.mu.Unlock()
				backoff, retryAt = 0, time.Time{}
				if p.opts.OnWrite != nil {
					p.opts.OnWrite(kind)
				}
				continue
			case ctx.Err() != nil:
				return
			default:
				backoff = min(max(2*backoff, p.opts.MinBackoff), p.opts.MaxBackoff)
				retryAt = clk.Now().Add(backoff)
				klog.ErrorS(err, "Writing the robot's state to its Node failed; keeping the newest state and retrying", "kind", kind, "retryIn", backoff)
				continue
			}
		}
		var timer clock.Timer
		var fire <-chan time.Time
		if !at.IsZero() {
			timer = clk.NewTimer(at.Sub(now))
			fire = timer.C()
		}
		select {
		case <-ctx.Done():
		case <-p.wake:
		case <-fire:
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

func (p *Publisher) write(ctx context.Context, s state.State) error {
	ctx, cancel := context.WithTimeout(ctx, p.opts.WriteTimeout)
	defer cancel()
	if err := p.w.Write(ctx, s); err != nil {
		if errors.Is(err, context.Canceled) {
			return err
		}
		return fmt.Errorf("publishing state: %w", err)
	}
	return nil
}
