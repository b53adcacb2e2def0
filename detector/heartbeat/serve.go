package heartbeat

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/roam-dev/roam/internal/heartbeat/wire"
)

// sweepEvery: expired sessions are forgotten (and their robots handed
// back to the Lease) this often.
const sweepEvery = time.Minute

// receiveBuffer is the heartbeat socket's requested receive buffer.
const receiveBuffer = 4 << 20

// ServerOptions configure Serve.
type ServerOptions struct {
	// UDPAddr receives heartbeats; SessionAddr serves the HTTPS session
	// endpoint with Certificate.
	UDPAddr, SessionAddr string
	Certificate          tls.Certificate
	Auth                 Authenticator
	Sessions             *Sessions
	// Sink receives accepted heartbeats; Ended is told the nodes whose
	// last session expired.
	Sink  func(node string, now time.Time)
	Ended func(node string, now time.Time)
	// Acking gates acknowledgements (AckGate.Acking).
	Acking func(now time.Time) bool
	// MayAck is Receiver.MayAck.
	MayAck  func(node string, now time.Time) bool
	Clock   clock.WithTicker
	Metrics *Metrics
}

// Serve runs the session endpoint, the receiver and the session sweeper
// until ctx ends, or fails when a listener cannot be opened.
func Serve(ctx context.Context, o ServerOptions) error {
	logger := klog.FromContext(ctx)
	ua, err := net.ResolveUDPAddr("udp", o.UDPAddr)
	if err != nil {
		return fmt.Errorf("heartbeat address %q: %w", o.UDPAddr, err)
	}
	conn, err := net.ListenUDP("udp", ua)
	if err != nil {
		return fmt.Errorf("heartbeat socket: %w", err)
	}
	// Room for the datagrams that arrive while the receiver waits for a
	// CPU: 4 MiB hold about 4,000 heartbeats, 40 ms of 10,000 robots at
	// 10 Hz. The kernel caps it at net.core.rmem_max.
	if err := conn.SetReadBuffer(receiveBuffer); err != nil {
		logger.Error(err, "Cannot enlarge the heartbeat socket's receive buffer", "bytes", receiveBuffer)
	}
	ln, err := net.Listen("tcp", o.SessionAddr)
	if err != nil {
		conn.Close()
		return fmt.Errorf("heartbeat session endpoint: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle(wire.SessionPath, &Handler{Auth: o.Auth, Sessions: o.Sessions, UDPPort: conn.LocalAddr().(*net.UDPAddr).Port})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 20 * time.Second,
		TLSConfig:   &tls.Config{Certificates: []tls.Certificate{o.Certificate}, MinVersion: tls.VersionTLS13},
		BaseContext: func(net.Listener) context.Context { return ctx }}
	errc := make(chan error, 2)
	go func() {
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("heartbeat session endpoint: %w", err)
		}
	}()
	rcv := &Receiver{Conn: conn, Sessions: o.Sessions, Sink: o.Sink, Acking: o.Acking, MayAck: o.MayAck, Clock: o.Clock, Metrics: o.Metrics}
	go func() { errc <- rcv.Run(ctx) }()
	logger.Info("Direct heartbeats served", "udp", conn.LocalAddr(), "sessions", ln.Addr())

	sweep := o.Clock.NewTicker(sweepEvery)
	defer sweep.Stop()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			if err != nil {
				return err
			}
			return nil
		case <-sweep.C():
			now := o.Clock.Now()
			for _, node := range o.Sessions.Sweep(now) {
				logger.V(2).Info("Direct heartbeat sessions ended; judging the robot by its Lease", "node", node)
				if o.Ended != nil {
					o.Ended(node, now)
				}
			}
		}
	}
}
