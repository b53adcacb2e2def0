package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/ipv4"
	"k8s.io/utils/clock"

	"github.com/roam-dev/roam/detector"
	"github.com/roam-dev/roam/detector/heartbeat"
	"github.com/roam-dev/roam/internal/heartbeat/wire"
)

// runDirect measures the direct-heartbeat path: n robots' datagrams at hz,
// sent by a child process (so its cost is not counted) through a real UDP
// socket on loopback to the detector's Receiver, which verifies every MAC,
// feeds the Core and acknowledges (as the leader does). garbage is the
// fraction of extra datagrams that are not heartbeats (random bytes, or a
// well-formed header of an unknown session).
func runDirect(n, hz int, garbage float64, window, settle, tick time.Duration) error {
	if n <= 0 || hz <= 0 || garbage < 0 || garbage > 1 {
		return fmt.Errorf("-nodes %d and -hz %d must be positive, -garbage %g in [0, 1]", n, hz, garbage)
	}
	reg := prometheus.NewRegistry()
	metrics, err := detector.NewMetrics(reg)
	if err != nil {
		return err
	}
	clk := clock.RealClock{}
	core, err := detector.NewCore(benchCoreConfig(), clk.Now(), metrics)
	if err != nil {
		return err
	}
	sessions := heartbeat.NewSessions(clk, time.Hour, nil)
	hm, err := heartbeat.NewMetrics(reg, sessions)
	if err != nil {
		return err
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	if err := conn.SetReadBuffer(4 << 20); err != nil {
		return fmt.Errorf("socket buffer: %w", err)
	}
	var keys strings.Builder
	for i := range n {
		ses, err := sessions.Issue(fmt.Sprintf("robot-%05d", i))
		if err != nil {
			return err
		}
		fmt.Fprintf(&keys, "%s %s\n", hex.EncodeToString(ses.ID[:]), hex.EncodeToString(ses.Key[:]))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rcv := &heartbeat.Receiver{Conn: conn, Sessions: sessions, Clock: clk, Metrics: hm,
		Sink:   func(node string, now time.Time) { core.HeartbeatFrom(node, detector.SourceDirect, 0, now) },
		Acking: func(time.Time) bool { return true }}
	go func() { _ = rcv.Run(ctx) }()

	runFor := settle + window + time.Second
	child := exec.Command(os.Args[0], "-sender", "-target", conn.LocalAddr().String(), "-hz", strconv.Itoa(hz),
		"-garbage", strconv.FormatFloat(garbage, 'g', -1, 64), "-duration", runFor.String())
	child.Stdin = strings.NewReader(keys.String())
	child.Stderr = os.Stderr
	out, err := child.StdoutPipe()
	if err != nil {
		return err
	}
	if err := child.Start(); err != nil {
		return fmt.Errorf("starting the sender: %w", err)
	}
	st, merr := measure(core, reg, tick, settle, window)
	counts, _ := io.ReadAll(out)
	if err := child.Wait(); err != nil {
		return fmt.Errorf("sender: %w", err)
	}
	if merr != nil {
		return merr
	}
	var sent, junk int64
	if _, err := fmt.Sscanf(string(counts), "%d %d", &sent, &junk); err != nil {
		return fmt.Errorf("sender reported %q: %w", counts, err)
	}
	time.Sleep(500 * time.Millisecond) // the last datagrams in flight
	accepted := int64(counterValue(reg, "roam_heartbeats_total"))
	rejected := int64(counterValue(reg, "roam_heartbeat_datagrams_dropped_total"))
	dropped := sent - accepted

	fmt.Printf("parameters: %d nodes, a heartbeat datagram each at %d Hz from a child process over UDP on loopback, MAC verified, acked; %.0f%% extra garbage; tick %v, window %v\n",
		n, hz, garbage*100, tick, window.Round(time.Second))
	st.print()
	fmt.Printf("datagrams: %d heartbeats sent, %d accepted, %d garbage sent, %d garbage rejected\n", sent, accepted, junk, rejected)
	fmt.Printf("detector %d nodes @%dHz direct: cpu %.1f%% of one core, rss %.0f MB, sweep %d us, dropped %d\n",
		n, hz, st.cpu, st.rss, st.p50.Microseconds(), dropped)
	return nil
}

// runSender is the child process of runDirect: it reads "id key" lines
// from stdin, sends each session's heartbeat at hz to target for d, plus
// garbage, and prints "heartbeats garbage" sent. It writes in batches
// (sendmmsg) so that it can offer the full rate on a shared machine.
func runSender(target string, hz int, garbage float64, d time.Duration) error {
	type robot struct {
		id  wire.SessionID
		mac *wire.MAC
		seq uint64
	}
	var robots []*robot
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			return fmt.Errorf("bad session line %q", sc.Text())
		}
		id, err1 := hex.DecodeString(f[0])
		key, err2 := hex.DecodeString(f[1])
		if err1 != nil || err2 != nil {
			return fmt.Errorf("bad session line %q", sc.Text())
		}
		r := &robot{}
		copy(r.id[:], id)
		var k wire.Key
		copy(k[:], key)
		r.mac = wire.NewMAC(k)
		robots = append(robots, r)
	}
	conn, err := net.Dial("udp", target)
	if err != nil {
		return err
	}
	go func() { // acks: read and discard
		buf := make([]byte, 64)
		for {
			if _, err := conn.Read(buf); err != nil {
				return
			}
		}
	}()
	pc := ipv4.NewPacketConn(conn.(*net.UDPConn))
	const batchSize = 64
	out := make([]ipv4.Message, batchSize)
	junkAt := make([]bool, batchSize)
	for i := range out {
		out[i].Buffers = [][]byte{make([]byte, 0, 256)}
	}
	var sent, junk int64
	queued := 0
	flush := func() {
		for done := 0; done < queued; {
			k, err := pc.WriteBatch(out[done:queued], 0)
			if err != nil || k == 0 {
				break
			}
			for _, j := range junkAt[done : done+k] {
				if j {
					junk++
				} else {
					sent++
				}
			}
			done += k
		}
		queued = 0
	}
	queue := func(p []byte, isJunk bool) {
		out[queued].Buffers[0], junkAt[queued] = p, isJunk
		queued++
		if queued == batchSize {
			flush()
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const slots = 10
	slotDur := time.Second / time.Duration(hz) / slots
	t := time.NewTicker(slotDur)
	defer t.Stop()
	start := time.Now()
	for done := 0; time.Since(start) < d; {
		<-t.C
		due := int(time.Since(start) / slotDur)
		for ; done < due; done++ {
			slot := done % slots
			n := len(robots)
			for _, r := range robots[slot*n/slots : (slot+1)*n/slots] {
				r.seq++
				queue(r.mac.Append(out[queued].Buffers[0][:0], wire.Datagram{Kind: wire.KindHeartbeat, Session: r.id, Seq: r.seq,
					AgentTime: int64(time.Since(start))}), false)
				if garbage > 0 && rng.Float64() < garbage {
					p := out[queued].Buffers[0][:rng.IntN(200)+1]
					for i := range p {
						p[i] = byte(rng.Uint32())
					}
					if rng.IntN(2) == 0 && len(p) >= wire.Size { // a well-formed header of no session
						p = p[:wire.Size]
						p[0], p[1] = wire.Version, byte(wire.KindHeartbeat)
					}
					queue(p, true)
				}
			}
		}
		flush()
	}
	fmt.Printf("%d %d\n", sent, junk)
	return nil
}
