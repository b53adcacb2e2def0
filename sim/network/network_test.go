package network

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func trace(m *Model, seed uint64, index int, horizon time.Duration) ([]time.Duration, []Outage) {
	r := m.NewRobot(seed, index, horizon)
	var at []time.Duration
	for {
		t, ok := r.Next()
		if !ok {
			return at, r.Outages()
		}
		at = append(at, t)
	}
}

func TestSameSeedSameTrace(t *testing.T) {
	m := DefaultModel()
	a, oa := trace(&m, 7, 3, 2*time.Hour)
	b, ob := trace(&m, 7, 3, 2*time.Hour)
	if !reflect.DeepEqual(a, b) || !reflect.DeepEqual(oa, ob) {
		t.Fatal("same seed and robot gave different traces")
	}
	c, _ := trace(&m, 8, 3, 2*time.Hour)
	if reflect.DeepEqual(a, c) {
		t.Fatal("different seeds gave the same trace")
	}
}

func TestTraceRespectsOutagesAndOrder(t *testing.T) {
	m := DefaultModel()
	m.DropoutsPerHour = 6
	m.DeathsPerDay = 24
	for robot := range 20 {
		at, outages := trace(&m, 1, robot, 6*time.Hour)
		if len(outages) == 0 {
			t.Fatalf("robot %d: no outages at 6 dropouts/h", robot)
		}
		for i := 1; i < len(at); i++ {
			if at[i] <= at[i-1] {
				t.Fatalf("robot %d: arrivals not increasing: %v then %v", robot, at[i-1], at[i])
			}
		}
		for _, o := range outages {
			for _, a := range at {
				// Nothing is sent inside an outage; a renew sent just before
				// one may still arrive within its latency.
				if a > o.Start+time.Second && a < o.End {
					t.Fatalf("robot %d: heartbeat at %v inside outage %+v", robot, a, o)
				}
			}
		}
	}
}

func TestCleanLinkRenewsAtTheKubeletPeriod(t *testing.T) {
	m := Model{RenewInterval: time.Second, RequestTimeout: 4 * time.Second, Links: []Link{{Name: "wire", Share: 1, Jitter: Normal}}}
	at, _ := trace(&m, 1, 0, time.Hour)
	if n := len(at); n < 3400 || n > 3600 {
		t.Fatalf("%d heartbeats in an hour at 1 s with ≤4%% jitter, want ~3460", n)
	}
	for i := 1; i < len(at); i++ {
		if gap := at[i] - at[i-1]; gap < time.Second || gap > 1040*time.Millisecond {
			t.Fatalf("gap %v outside the kubelet's [1 s, 1.04 s]", gap)
		}
	}
}

// Blackouts (Wi-Fi hiccups) hold renews back until the link returns, and
// lose them when the link stays dark past the request timeout; packet loss
// only delays renews by TCP retransmissions.
func TestBlackoutsAndLossDelayHeartbeats(t *testing.T) {
	silences := func(l Link) (over2s, over4s int) {
		m := Model{RenewInterval: time.Second, RequestTimeout: 4 * time.Second, Links: []Link{l}}
		at, _ := trace(&m, 1, 0, 4*time.Hour)
		for i := 1; i < len(at); i++ {
			if g := at[i] - at[i-1]; g > 2*time.Second {
				over2s++
				if g > 5*time.Second {
					over4s++
				}
			}
		}
		return over2s, over4s
	}
	base := Link{Name: "l", Share: 1, Jitter: Normal}
	if a, _ := silences(base); a != 0 {
		t.Fatalf("clean link: %d silences over 2 s", a)
	}
	lossy := base
	lossy.Loss = 0.2 // retransmissions: delays of 0.2, 0.6, 1.4 s…
	// Over 5 s takes 5 losses in a row (0.2⁵ ≈ 3·10⁻⁴ of 14,400 renews ≈ 5):
	// the retransmissions outlast the 4 s request timeout.
	if a, b := silences(lossy); a < 50 || b > 15 {
		t.Fatalf("20%% packet loss: %d silences over 2 s (want many), %d over 5 s (want only a few: TCP retransmits)", a, b)
	}
	dark := base
	dark.BurstsPerHour, dark.BurstMean = 60, 5*time.Second
	a, b := silences(dark)
	// 240 blackouts of mean 5 s: about half outlast 2 s… and lose renews.
	if a < 60 || b < 20 {
		t.Fatalf("60 blackouts/h of mean 5 s: %d silences over 2 s, %d over 5 s", a, b)
	}
}

func TestParseLinksRoundTrip(t *testing.T) {
	m := DefaultModel()
	got, err := ParseLinks(FormatLinks(m.Links))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m.Links) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, m.Links)
	}
	for _, bad := range []string{"x", "x:abc", "x:1:latency", "x:1:speed=3", "x:1:latency=fast"} {
		if _, err := ParseLinks(bad); err == nil {
			t.Errorf("ParseLinks(%q) accepted", bad)
		}
	}
	if err := m.Validate(); err != nil {
		t.Fatalf("default model invalid: %v", err)
	}
	m.Links[0].BurstMean = 0
	if err := m.Validate(); err == nil {
		t.Error("bursts without a burst mean accepted")
	}
	m.Links[0].BurstMean = time.Second
	m.Links[0].Jitter = "cauchy"
	if err := m.Validate(); err == nil {
		t.Error("unknown jitter accepted")
	}
}

// Every named model is valid, and an unknown name is an error naming the
// known ones.
func TestNamedModels(t *testing.T) {
	for _, name := range ModelNames() {
		m, err := NamedModel(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := m.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := NamedModel("lunar"); err == nil || !strings.Contains(err.Error(), "poor-minority") {
		t.Errorf("unknown model: %v", err)
	}
}

// The direct path shares the robot's ground truth: nothing arrives during
// an outage, arrivals are increasing, and about one datagram per interval
// arrives while the robot is connected.
func TestDatagramsShareTheRobotsOutages(t *testing.T) {
	m := DefaultModel()
	const horizon = 6 * time.Hour
	for i := range 20 {
		r := m.NewRobot(3, i, horizon)
		for _, ok := r.Next(); ok; _, ok = r.Next() {
		}
		d := r.Datagrams(3, i, 100*time.Millisecond)
		prev, n := time.Duration(-1), 0
		for at, ok := d.Next(); ok; at, ok = d.Next() {
			if at <= prev {
				t.Fatalf("robot %d: arrival %v after %v", i, at, prev)
			}
			for _, o := range r.Outages() {
				// Sent before the outage and delayed into it is possible;
				// sent during it is not: the latest arrival from before an
				// outage is bounded by the largest delay, well under 10 s.
				if at > o.Start+10*time.Second && at < o.End {
					t.Fatalf("robot %d: datagram arrived at %v inside outage %+v", i, at, o)
				}
			}
			prev = at
			n++
		}
		if int64(n)+d.Lost+d.Overtaken != d.Sent {
			t.Errorf("robot %d: %d accepted + %d lost + %d overtaken ≠ %d sent", i, n, d.Lost, d.Overtaken, d.Sent)
		}
		if want := int(horizon / (100 * time.Millisecond)); n < want/2 || n > want {
			t.Errorf("robot %d: %d datagrams accepted of about %d", i, n, want)
		}
	}
}

// Delay spikes delay the Lease path too: with huge spikes, renewals
// arrive later on average than without.
func TestSpikesDelayBothPaths(t *testing.T) {
	base := DefaultModel()
	base.SpikesPerHour = 0
	spiky := DefaultModel()
	spiky.SpikesPerHour, spiky.SpikeLength, spiky.SpikeDelay = 60, 30*time.Second, time.Second
	count := func(m Model) (int, int) {
		r := m.NewRobot(5, 0, 2*time.Hour)
		n := 0
		for _, ok := r.Next(); ok; _, ok = r.Next() {
			n++
		}
		d := r.Datagrams(5, 0, 100*time.Millisecond)
		dn := 0
		for _, ok := d.Next(); ok; _, ok = d.Next() {
			dn++
		}
		return n, dn
	}
	n0, d0 := count(base)
	n1, d1 := count(spiky)
	if n1 >= n0 {
		t.Errorf("renewals: %d with spikes, %d without; spikes should slow the synchronous renew loop", n1, n0)
	}
	if d1 >= d0 {
		t.Errorf("datagrams accepted: %d with spikes, %d without; spike ends overtake delayed datagrams", d1, d0)
	}
}
