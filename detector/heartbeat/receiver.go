package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
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
	Acking func(now time.Time) bool
	// MayAck reports whether node's heartbeat received at now may be
	// acknowledged, after Acking allowed it (Core.AckHeartbeat: it counts
	// the acknowledged heartbeat in the fence floor and refuses once the
	// robot's pods were handed for removal). Nil: always.
	MayAck  func(node string, now time.Time) bool
	Clock   clock.PassiveClock
	Metrics *Metrics
	// OnDrop, when set, is called for each dropped datagram (tests).
	OnDrop func(reason wire.DropReason)
}

// batch is how many datagrams one system call reads (recvmmsg) or
// writes (sendmmsg): at 100,000 datagrams a second the per-call cost, not
// the MAC, dominates.
const batch = 64

// batchConn reads and writes many datagrams per system call
// (golang.org/x/net's ipv4 and ipv6 PacketConn).
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// Run reads datagrams until ctx ends (it closes Conn then).
func (r *Receiver) Run(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	stop := context.AfterFunc(ctx, func() { _ = r.Conn.Close() })
	defer stop()
	var bc batchConn = ipv6.NewPacketConn(r.Conn)
	if a, ok := r.Conn.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() != nil {
		bc = ipv4.NewPacketConn(r.Conn)
	}
	in := make([]ipv4.Message, batch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, wire.MaxDatagram+1)} // one more: oversize is detectable
	}
	out := make([]ipv4.Message, batch)
	for i := range out {
		out[i].Buffers = [][]byte{make([]byte, 0, wire.Size)}
	}
	for {
		n, err := bc.ReadBatch(in, 0)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			logger.Error(err, "Reading heartbeat datagrams")
			continue
		}
		now := r.Clock.Now()
		replies := 0
		for i := range in[:n] {
			m := &in[i]
			reply := r.handle(m.Buffers[0][:m.N], now, out[replies].Buffers[0][:0])
			if len(reply) > 0 {
				out[replies].Buffers[0], out[replies].Addr = reply, m.Addr
				replies++
			}
		}
		for sent := 0; sent < replies; {
			k, err := bc.WriteBatch(out[sent:replies], 0)
			if err != nil || k == 0 {
				break // replies are best effort: the agent sends again
			}
			sent += k
		}
	}
}

// handle verifies one datagram received at now and returns the reply to
// send (appended to buf), if any: an acknowledgement, or a rehandshake
// notice for an unknown session.
func (r *Receiver) handle(p []byte, now time.Time, buf []byte) []byte {
	node, d, reason := r.Sessions.Open(p, now)
	if reason != wire.DropNone {
		r.Metrics.drop(reason)
		if r.OnDrop != nil {
			r.OnDrop(reason)
		}
		if reason == wire.DropUnknownSession && d.Kind == wire.KindHeartbeat {
			// The agent holds a session this replica does not know (it
			// restarted): tell it to open a new one.
			return wire.AppendRehandshake(buf, d.Session)
		}
		return nil
	}
	r.Sink(node, now)
	if r.Acking == nil || !r.Acking(now) {
		return nil
	}
	if r.MayAck != nil && !r.MayAck(node, now) {
		return nil
	}
	ack, ok := r.Sessions.AppendAck(buf, d)
	if ok && r.Metrics != nil {
		r.Metrics.Acks.Inc()
	}
	return ack
}
