package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/roam-dev/roam/internal/heartbeat/wire"
)

// Metrics of the receiver; names are part of roam's interface.
type Metrics struct {
	// Dropped counts datagrams dropped, by reason (wire.DropReason).
	Dropped *prometheus.CounterVec
	// Acks counts acknowledgements sent.
	Acks     prometheus.Counter
	dropped  [16]prometheus.Counter // by reason, resolved once
	sessions prometheus.GaugeFunc
}

// NewMetrics creates the receiver's metrics, reporting the session count
// of sessions, and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer, sessions *Sessions) (*Metrics, error) {
	m := &Metrics{
		Dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roam_heartbeat_datagrams_dropped_total",
			Help: "Direct heartbeat datagrams dropped, by reason (oversize, malformed, version, unknown_session, bad_mac, replay, wrong_kind).",
		}, []string{"reason"}),
		Acks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "roam_heartbeat_acks_total",
			Help: "Acknowledgements of direct heartbeats sent (only while leading).",
		}),
		sessions: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "roam_heartbeat_sessions",
			Help: "Direct heartbeat sessions held by this replica.",
		}, func() float64 { return float64(sessions.Len()) }),
	}
	for _, r := range wire.DropReasons() {
		m.dropped[r] = m.Dropped.WithLabelValues(r.String())
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.Dropped, m.Acks, m.sessions} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("registering heartbeat metrics: %w", err)
			}
		}
	}
	return m, nil
}

func (m *Metrics) drop(r wire.DropReason) {
	if m != nil && int(r) < len(m.dropped) && m.dropped[r] != nil {
		m.dropped[r].Inc()
	}
}

// Receiver reads heartbeat datagrams from a UDP socket, verifies them
// against the session table, hands each accepted one to Sink stamped with
// the detector's own clock, and acknowledges it while Acking says so.
type Receiver struct {
	Conn     *net.UDPConn
	Sessions *Sessions
	// Sink receives every accepted heartbeat (the Core).
	Sink func(node string, now time.Time)
	// Acking reports whether this replica may acknowledge at now (the
	// leader, while sure to be: see AckGate). Nil: never.
	Acking  func(now time.Time) bool
	Clock   clock.PassiveClock
	Metrics *Metrics
	// OnDrop, when set, is called for each dropped datagram (tests).
	OnDrop func(reason wire.DropReason, from netip.AddrPort)
}

// Run reads datagrams until ctx ends (it closes Conn then).
func (r *Receiver) Run(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	stop := context.AfterFunc(ctx, func() { _ = r.Conn.Close() })
	defer stop()
	buf := make([]byte, wire.MaxDatagram+1) // one more: oversize is detectable
	out := make([]byte, 0, wire.Size)
	for {
		n, from, err := r.Conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			logger.Error(err, "Reading heartbeat datagram")
			continue
		}
		now := r.Clock.Now()
		node, d, reason := r.Sessions.Open(buf[:n], now)
		if reason != wire.DropNone {
			r.Metrics.drop(reason)
			if r.OnDrop != nil {
				r.OnDrop(reason, from)
			}
			if reason == wire.DropUnknownSession && d.Kind == wire.KindHeartbeat {
				// The agent holds a session this replica does not know
				// (it restarted): tell it to open a new one.
				_, _ = r.Conn.WriteToUDPAddrPort(wire.AppendRehandshake(out[:0], d.Session), from)
			}
			continue
		}
		r.Sink(node, now)
		if r.Acking == nil || !r.Acking(now) {
			continue
		}
		if ack, ok := r.Sessions.AppendAck(out[:0], d); ok {
			if _, err := r.Conn.WriteToUDPAddrPort(ack, from); err == nil && r.Metrics != nil {
				r.Metrics.Acks.Inc()
			}
		}
	}
}
