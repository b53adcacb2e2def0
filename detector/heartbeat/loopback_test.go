package heartbeat_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/clock"

	agenthb "github.com/roam-dev/roam/agent/heartbeat"
	"github.com/roam-dev/roam/detector/heartbeat"
	"github.com/roam-dev/roam/internal/heartbeat/wire"
)

// tokens authenticates fixed tokens (the TokenReview path has its own test
// against the API server).
type tokens map[string]string

func (t tokens) Authenticate(_ context.Context, token string) (string, error) {
	if n, ok := t[token]; ok {
		return n, nil
	}
	return "", fmt.Errorf("%w: unknown token", heartbeat.ErrUnauthenticated)
}

// replica is one detector replica on loopback: session endpoint, UDP
// receiver and the heartbeats it recorded.
type replica struct {
	sessions *heartbeat.Sessions
	gate     *heartbeat.AckGate
	https    *httptest.Server
	addr     string // session endpoint host:port
	udp      string // heartbeat socket host:port
	cancel   context.CancelFunc
	done     chan struct{}

	mu    sync.Mutex
	beats map[string]int
	drops map[wire.DropReason]int
}

func (r *replica) count(node string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.beats[node]
}

func (r *replica) dropped(reason wire.DropReason) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.drops[reason]
}

func (r *replica) stop() {
	r.cancel()
	<-r.done
	r.https.Close()
}

var testCert = sync.OnceValues(func() (tls.Certificate, error) {
	certPEM, keyPEM, err := heartbeat.SelfSigned([]string{"roam-detector.test"}, time.Now())
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
})

func rootCAs(t *testing.T) *x509.CertPool {
	cert, err := testCert()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return pool
}

// startReplica starts a replica on the given addresses ("": a free port).
func startReplica(t *testing.T, auth heartbeat.Authenticator, httpAddr, udpAddr string) *replica {
	t.Helper()
	cert, err := testCert()
	if err != nil {
		t.Fatal(err)
	}
	if udpAddr == "" {
		udpAddr = "127.0.0.1:0"
	}
	ua, err := net.ResolveUDPAddr("udp", udpAddr)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenUDP("udp", ua)
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.RealClock{}
	r := &replica{sessions: heartbeat.NewSessions(clk, time.Hour, nil), gate: heartbeat.NewAckGate(clk, 10*time.Second),
		beats: map[string]int{}, drops: map[wire.DropReason]int{}, done: make(chan struct{})}
	h := &heartbeat.Handler{Auth: auth, Sessions: r.sessions, UDPPort: conn.LocalAddr().(*net.UDPAddr).Port}
	r.https = httptest.NewUnstartedServer(h)
	if httpAddr != "" {
		l, err := net.Listen("tcp", httpAddr)
		if err != nil {
			t.Fatal(err)
		}
		r.https.Listener.Close()
		r.https.Listener = l
	}
	r.https.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	r.https.StartTLS()
	r.addr = r.https.Listener.Addr().String()
	r.udp = conn.LocalAddr().String()
	rcv := &heartbeat.Receiver{Conn: conn, Sessions: r.sessions, Clock: clk, Acking: r.gate.Acking,
		Sink: func(node string, _ time.Time) {
			r.mu.Lock()
			r.beats[node]++
			r.mu.Unlock()
		},
		OnDrop: func(reason wire.DropReason) {
			r.mu.Lock()
			r.drops[reason]++
			r.mu.Unlock()
		}}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		defer close(r.done)
		_ = rcv.Run(ctx)
	}()
	t.Cleanup(r.stop)
	return r
}

type acks struct {
	mu   sync.Mutex
	n    int
	last time.Time
}

func (a *acks) on(sentAt time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.n++
	if sentAt.After(a.last) {
		a.last = sentAt
	}
}

func (a *acks) get() (int, time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n, a.last
}

func startAgent(t *testing.T, node, token string, onAck func(time.Time), addrs ...string) {
	t.Helper()
	s, err := agenthb.New(agenthb.Options{Node: node, Replicas: agenthb.Static(addrs...), RootCAs: rootCAs(t),
		ServerName: "roam-detector.test", Token: func() (string, error) { return token, nil }, Interval: 20 * time.Millisecond,
		ResolveEvery: time.Hour, OnAck: onAck})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 30*time.Second, true,
		func(context.Context) (bool, error) { return cond(), nil }); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// Both replicas receive the robot's heartbeats; only the leader
// acknowledges, with the agent's send times; a leader change moves the
// acknowledgements without a new session.
func TestBothReplicasReceiveOnlyTheLeaderAcks(t *testing.T) {
	auth := tokens{"token-a": "robot-a"}
	leader, standby := startReplica(t, auth, "", ""), startReplica(t, auth, "", "")
	leader.gate.Renewed(time.Now())
	var got acks
	before := time.Now()
	startAgent(t, "robot-a", "token-a", got.on, leader.addr, standby.addr)

	waitFor(t, "heartbeats at both replicas", func() bool { return leader.count("robot-a") >= 5 && standby.count("robot-a") >= 5 })
	waitFor(t, "acks", func() bool { n, _ := got.get(); return n >= 5 })
	if _, last := got.get(); last.Before(before) || last.After(time.Now()) {
		t.Errorf("acknowledged send time %v is not a send time of this test (after %v)", last, before)
	}

	// Leader change: the old leader's gate closes, the standby's opens.
	leader.gate.Stop()
	n0, _ := got.get()
	standby.gate.Renewed(time.Now())
	b0 := leader.count("robot-a")
	waitFor(t, "acks from the new leader", func() bool { n, _ := got.get(); return n >= n0+5 })
	if leader.count("robot-a") <= b0 {
		t.Error("the old leader stopped receiving heartbeats")
	}
	if leader.sessions.Len() != 1 || standby.sessions.Len() != 1 {
		t.Errorf("sessions: old leader %d, new leader %d; want 1 each (no new session for a leader change)", leader.sessions.Len(), standby.sessions.Len())
	}
}

// A gate that is not renewed closes by itself.
func TestAckGateClosesWithoutRenewal(t *testing.T) {
	now := time.Now()
	g := heartbeat.NewAckGate(clock.RealClock{}, 10*time.Second)
	if g.Acking(now) {
		t.Error("a new gate acks")
	}
	g.Renewed(now)
	if !g.Acking(now.Add(9 * time.Second)) {
		t.Error("no acks within the window of a renewal")
	}
	if g.Acking(now.Add(10 * time.Second)) {
		t.Error("acks at the end of the window without a renewal")
	}
	g.Renewed(now.Add(5 * time.Second))
	g.Stop()
	if g.Acking(now.Add(6 * time.Second)) {
		t.Error("acks after leadership was lost")
	}
}

// A restarted replica does not know the agent's session: it tells the
// agent, which opens a new one and is heard again.
func TestRestartedReplicaGetsANewSession(t *testing.T) {
	auth := tokens{"token-a": "robot-a"}
	first := startReplica(t, auth, "", "")
	addr := first.addr
	startAgent(t, "robot-a", "token-a", nil, addr)
	waitFor(t, "heartbeats", func() bool { return first.count("robot-a") >= 3 })
	first.stop()

	second := startReplica(t, auth, addr, first.udp) // same addresses, new process state
	waitFor(t, "heartbeats after the restart", func() bool { return second.count("robot-a") >= 3 })
	if second.sessions.Len() != 1 {
		t.Errorf("%d sessions after the restart, want 1", second.sessions.Len())
	}
}

// Only the token's node gets a session: a robot cannot open one for
// another, and an unknown token none at all.
func TestSessionOnlyForTheTokensNode(t *testing.T) {
	r := startReplica(t, tokens{"token-b": "robot-b"}, "", "")
	startAgent(t, "robot-a", "token-b", nil, r.addr) // robot-b's token claiming robot-a
	startAgent(t, "robot-c", "bogus", nil, r.addr)
	startAgent(t, "robot-b", "token-b", nil, r.addr)
	waitFor(t, "robot-b's heartbeats", func() bool { return r.count("robot-b") >= 3 })
	if n := r.count("robot-a") + r.count("robot-c"); n != 0 {
		t.Errorf("%d heartbeats accepted for robots whose token does not prove them", n)
	}
	if n := r.sessions.Len(); n != 1 {
		t.Errorf("%d sessions, want robot-b's only", n)
	}
	resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: rootCAs(t), ServerName: "roam-detector.test"}}}).
		Post("https://"+r.addr+wire.SessionPath, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a request without a token: %s, want 401", resp.Status)
	}
}

// Garbage, forgeries and replays from the network are dropped by reason;
// the robot's genuine heartbeats keep flowing.
func TestReceiverDropsBadDatagramsByReason(t *testing.T) {
	r := startReplica(t, tokens{"token-a": "robot-a"}, "", "")
	startAgent(t, "robot-a", "token-a", nil, r.addr)
	waitFor(t, "heartbeats", func() bool { return r.count("robot-a") >= 3 })

	conn, err := net.Dial("udp", r.udp)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var ses wire.SessionID
	ses[0] = 9
	forged := wire.NewMAC(wire.Key{1}).Append(nil, wire.Datagram{Kind: wire.KindHeartbeat, Session: ses, Seq: 1})
	sends := []struct {
		p    []byte
		want wire.DropReason
	}{
		{make([]byte, 200), wire.DropOversize},
		{[]byte{1, 2, 3}, wire.DropMalformed},
		{append([]byte{7}, forged[1:]...), wire.DropVersion},
		{forged, wire.DropUnknownSession},
	}
	for _, s := range sends {
		if _, err := conn.Write(s.p); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range sends {
		waitFor(t, "a "+s.want.String()+" drop", func() bool { return r.dropped(s.want) >= 1 })
	}
	n := r.count("robot-a")
	waitFor(t, "heartbeats after the garbage", func() bool { return r.count("robot-a") >= n+3 })
}

// A receiver on every address (":port", a dual-stack socket where the host
// has IPv6) hears IPv4 agents and acknowledges them.
func TestReceiverOnAllAddresses(t *testing.T) {
	r := startReplica(t, tokens{"token-a": "robot-a"}, "", ":0")
	r.gate.Renewed(time.Now())
	var got acks
	startAgent(t, "robot-a", "token-a", got.on, r.addr)
	waitFor(t, "heartbeats and acks", func() bool { n, _ := got.get(); return r.count("robot-a") >= 3 && n >= 3 })
}
