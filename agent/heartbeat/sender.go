// Package heartbeat is roam-agent's end of direct heartbeats: it opens a
// session with every roam-detector replica over HTTPS (proving the robot's
// node with the agent's pod-bound ServiceAccount token), then sends each
// replica a MACed UDP heartbeat every interval (package
// internal/heartbeat/wire) and reports the leader's acknowledgements.
package heartbeat

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/roam-dev/roam/internal/heartbeat/wire"
)

// Defaults of Options.
const (
	// DefaultInterval between two heartbeats to each replica: ten per
	// second let the detector tell a lost robot from a slow one within
	// about a second (docs/detector.md).
	DefaultInterval = 100 * time.Millisecond
	// DefaultResolveEvery: the replicas' addresses are looked up again
	// this often, so a rescheduled replica is heartbeated within seconds.
	DefaultResolveEvery = 10 * time.Second
	// minRetry and maxRetry bound the wait between two session attempts
	// with one replica (doubling on each failure).
	minRetry = time.Second
	maxRetry = 30 * time.Second
)

// Resolver lists the session endpoints ("host:port") of every detector
// replica.
type Resolver func(ctx context.Context) ([]string, error)

// Static resolves to fixed addresses.
func Static(addrs ...string) Resolver {
	return func(context.Context) ([]string, error) { return addrs, nil }
}

// DNS resolves host (a headless Service's name: one address per ready
// replica) and pairs every address with port.
func DNS(host, port string) Resolver {
	return func(ctx context.Context) ([]string, error) {
		ips, err := net.DefaultResolver.LookupHost(ctx, host)
		if err != nil {
			return nil, fmt.Errorf("resolving detector replicas %s: %w", host, err)
		}
		out := make([]string, len(ips))
		for i, ip := range ips {
			out[i] = net.JoinHostPort(ip, port)
		}
		return out, nil
	}
}

// Options configure a Sender.
type Options struct {
	// Node is this robot's Node name.
	Node string
	// Replicas lists the detector replicas' session endpoints.
	Replicas Resolver
	// ResolveEvery (DefaultResolveEvery).
	ResolveEvery time.Duration
	// RootCAs verify the session endpoint's certificate; ServerName is the
	// name it must carry (default: the host of each address).
	RootCAs    *x509.CertPool
	ServerName string
	// Token returns the agent's current pod-bound ServiceAccount token
	// (read again for every session: the kubelet rotates it).
	Token func() (string, error)
	// Interval between heartbeats (DefaultInterval).
	Interval time.Duration
	Clock    clock.WithTicker
	// OnAck is called for every acknowledgement (only the leading replica
	// sends them) with the send time, on Clock, of the acknowledged
	// heartbeat. Acks may arrive out of order.
	OnAck func(sentAt time.Time)
	// Sent and Acks count heartbeats sent and acknowledgements received
	// (optional).
	Sent, Acks prometheus.Counter
}

// session is one replica's session as the agent holds it.
type session struct {
	id      wire.SessionID
	sendMAC *wire.MAC // used by the send loop only
	ackMAC  *wire.MAC // used by the ack reader only
	udp     netip.AddrPort
	seq     uint64    // last sequence sent (send loop only)
	renewAt time.Time // open the next session from here
}

// replica is one detector replica.
type replica struct {
	addr     string
	ses      *session // current; nil until the first session
	pending  bool     // a session request is in flight
	retryAt  time.Time
	retry    time.Duration
	rehandsh bool // the replica asked for a new session
}

// Sender sends direct heartbeats to every detector replica.
type Sender struct {
	opts   Options
	origin time.Time
	client *http.Client
	conn   *net.UDPConn

	mu       sync.Mutex
	replicas map[string]*replica
	byID     map[wire.SessionID]*session // current and previous sessions, for acks
}

// New checks opts and opens the UDP socket.
func New(opts Options) (*Sender, error) {
	switch {
	case opts.Node == "":
		return nil, errors.New("heartbeat sender: node name is empty")
	case opts.Replicas == nil:
		return nil, errors.New("heartbeat sender: no detector replicas to send to")
	case opts.Token == nil:
		return nil, errors.New("heartbeat sender: no token source")
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.ResolveEvery <= 0 {
		opts.ResolveEvery = DefaultResolveEvery
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	conn, err := net.ListenUDP("udp", nil)
	if err != nil {
		return nil, fmt.Errorf("heartbeat socket: %w", err)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: opts.RootCAs, ServerName: opts.ServerName, MinVersion: tls.VersionTLS13},
		TLSHandshakeTimeout: 10 * time.Second, MaxIdleConnsPerHost: 1, IdleConnTimeout: time.Minute}
	return &Sender{opts: opts, origin: opts.Clock.Now(), conn: conn, client: &http.Client{Transport: tr, Timeout: 20 * time.Second},
		replicas: map[string]*replica{}, byID: map[wire.SessionID]*session{}}, nil
}

// Run sends heartbeats until ctx ends.
func (s *Sender) Run(ctx context.Context) error {
	defer s.conn.Close()
	go s.readAcks(ctx)
	context.AfterFunc(ctx, func() { _ = s.conn.Close() })
	s.resolve(ctx)
	tick := s.opts.Clock.NewTicker(s.opts.Interval)
	defer tick.Stop()
	resolve := s.opts.Clock.NewTicker(s.opts.ResolveEvery)
	defer resolve.Stop()
	buf := make([]byte, 0, wire.Size)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-resolve.C():
			s.resolve(ctx)
		case <-tick.C():
			buf = s.beat(ctx, buf)
		}
	}
}

// resolve updates the replica set.
func (s *Sender) resolve(ctx context.Context) {
	addrs, err := s.opts.Replicas(ctx)
	if err != nil {
		klog.FromContext(ctx).Error(err, "Listing detector replicas; keeping the known ones")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := make(map[string]bool, len(addrs))
	for _, a := range addrs {
		keep[a] = true
		if s.replicas[a] == nil {
			s.replicas[a] = &replica{addr: a, retry: minRetry}
		}
	}
	for a, r := range s.replicas {
		if !keep[a] {
			if r.ses != nil {
				delete(s.byID, r.ses.id)
			}
			delete(s.replicas, a)
		}
	}
}

// beat sends one heartbeat to every replica with a session, and starts
// the session requests that are due.
func (s *Sender) beat(ctx context.Context, buf []byte) []byte {
	now := s.opts.Clock.Now()
	at := int64(now.Sub(s.origin))
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.replicas {
		if !r.pending && !now.Before(r.retryAt) && (r.ses == nil || r.rehandsh || !now.Before(r.ses.renewAt)) {
			r.pending = true
			go s.open(ctx, r)
		}
		if r.ses == nil {
			continue
		}
		r.ses.seq++
		buf = r.ses.sendMAC.Append(buf[:0], wire.Datagram{Kind: wire.KindHeartbeat, Session: r.ses.id, Seq: r.ses.seq, AgentTime: at})
		if _, err := s.conn.WriteToUDPAddrPort(buf, r.ses.udp); err == nil && s.opts.Sent != nil {
			s.opts.Sent.Inc()
		}
	}
	return buf
}

// open requests a session from r and installs it.
func (s *Sender) open(ctx context.Context, r *replica) {
	ses, err := s.request(ctx, r.addr)
	now := s.opts.Clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	r.pending = false
	if err != nil {
		r.retryAt = now.Add(r.retry)
		r.retry = min(2*r.retry, maxRetry)
		if ctx.Err() == nil {
			klog.FromContext(ctx).Error(err, "Opening a heartbeat session", "replica", r.addr, "retryIn", r.retryAt.Sub(now))
		}
		return
	}
	if s.replicas[r.addr] != r {
		return // the replica went away meanwhile
	}
	// The previous session stays known for its late acks; the one before
	// it is forgotten.
	for id, old := range s.byID {
		if old.udp == ses.udp && old != r.ses {
			delete(s.byID, id)
		}
	}
	r.ses, r.rehandsh, r.retry = ses, false, minRetry
	r.retryAt = now.Add(minRetry) // a forged rehandshake notice cannot make it ask faster
	s.byID[ses.id] = ses
	klog.FromContext(ctx).V(2).Info("Heartbeat session opened", "replica", r.addr, "udp", ses.udp)
}

// request performs the HTTPS session request.
func (s *Sender) request(ctx context.Context, addr string) (*session, error) {
	token, err := s.opts.Token()
	if err != nil {
		return nil, fmt.Errorf("reading the ServiceAccount token: %w", err)
	}
	body, _ := json.Marshal(wire.SessionRequest{Node: s.opts.Node})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+wire.SessionPath, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	start := s.opts.Clock.Now()
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("reading session response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("session refused: %s: %s", resp.Status, bytes.TrimSpace(data))
	}
	var sr wire.SessionResponse
	if err := json.Unmarshal(data, &sr); err != nil {
		return nil, fmt.Errorf("decoding session response: %w", err)
	}
	if len(sr.ID) != wire.SessionIDSize || len(sr.Key) != wire.KeySize || sr.UDPPort <= 0 || sr.UDPPort > 65535 || !(sr.TTLSeconds > 0) {
		return nil, fmt.Errorf("invalid session response (id %d bytes, key %d bytes, udpPort %d, ttl %v s)", len(sr.ID), len(sr.Key), sr.UDPPort, sr.TTLSeconds)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ap, err := netip.ParseAddrPort(net.JoinHostPort(host, strconv.Itoa(sr.UDPPort)))
	if err != nil {
		ip, lerr := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if lerr != nil || len(ip) == 0 {
			return nil, fmt.Errorf("replica address %s: %w", host, errors.Join(err, lerr))
		}
		ap = netip.AddrPortFrom(ip[0].Unmap(), uint16(sr.UDPPort))
	}
	ses := &session{udp: ap, renewAt: start.Add(time.Duration(sr.TTLSeconds * float64(time.Second) / 2))}
	var key wire.Key
	copy(ses.id[:], sr.ID)
	copy(key[:], sr.Key)
	ses.sendMAC, ses.ackMAC = wire.NewMAC(key), wire.NewMAC(key)
	return ses, nil
}

// readAcks handles the replicas' datagrams: acknowledgements and
// rehandshake notices.
func (s *Sender) readAcks(ctx context.Context) {
	buf := make([]byte, wire.MaxDatagram+1)
	for {
		n, _, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		d, err := wire.Peek(buf[:n])
		if err != nil {
			continue
		}
		s.mu.Lock()
		ses := s.byID[d.Session]
		switch {
		case ses == nil:
		case d.Kind == wire.KindRehandshake:
			for _, r := range s.replicas {
				if r.ses == ses {
					r.rehandsh = true
				}
			}
			ses = nil
		case d.Kind != wire.KindAck || !ses.ackMAC.Verify(buf[:n]):
			ses = nil
		}
		s.mu.Unlock()
		if ses == nil {
			continue
		}
		if s.opts.Acks != nil {
			s.opts.Acks.Inc()
		}
		if s.opts.OnAck != nil {
			s.opts.OnAck(s.origin.Add(time.Duration(d.AgentTime)))
		}
	}
}
