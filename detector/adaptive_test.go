package detector

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// wifiGap is a jittery 1 s renewal with a known heavy tail: 1 s plus a
// Pareto excess (scale 150 ms, shape 4.5), like sim/network's roaming link.
func wifiGap(seed uint64) func(string) time.Duration {
	rng := rand.New(rand.NewPCG(seed, 25))
	return func(string) time.Duration {
		x := 0.15*math.Pow(1-rng.Float64(), -1/4.5) - 0.15
		return time.Second + time.Duration(x*float64(time.Second))
	}
}

// learned runs nodes on wifiGap for an hour, long enough for their own
// estimates to replace the prior.
func learned(t *testing.T, cfg CoreConfig, m *Metrics, nodes ...string) *sim {
	t.Helper()
	s := newSim(t, cfg, m)
	s.gap = wifiGap(1)
	for _, n := range nodes {
		s.add(n, "")
	}
	s.run(time.Hour)
	for _, n := range nodes {
		if st := s.core.Status(n, s.now); st.Link.Prior || st.Link.EvictionTimeout <= 0 {
			t.Fatalf("%s after an hour: %+v, want its own estimate", n, st.Link)
		}
	}
	return s
}

// A node with a history is evicted at the first tick at which it has been
// silent for its own eviction timeout: suspected no later, evicted not
// before.
func TestAdaptiveEvictsAtItsOwnTimeout(t *testing.T) {
	s := learned(t, adaptiveRule(), nil, "r")
	timeout := s.core.Status("r", s.now).Link.EvictionTimeout
	if n := count(s.intents, IntentEvict, "r"); n != 0 {
		t.Fatalf("live robot evicted %d times in its first hour", n)
	}
	s.silence("r")
	got := s.run(timeout + 2*time.Second)
	ev, ok := first(got, IntentEvict, "r")
	if !ok {
		t.Fatalf("silent robot not evicted within its timeout %v: %+v", timeout, got)
	}
	sus, _ := first(got, IntentSuspect, "r")
	if d := ev.At.Sub(ev.LastHeartbeat); d < timeout || d >= timeout+tick {
		t.Errorf("evicted %v after the last heartbeat, want its timeout %v (to the next tick)", d, timeout)
	}
	if sus.At.After(ev.At) || ev.EvictionTimeout != timeout {
		t.Errorf("suspected at %v, evicted at %v with timeout %v; want suspicion first and timeout %v", sus.At, ev.At, ev.EvictionTimeout, timeout)
	}
}

// A node without enough history is on the prior, the fixed rule: evicted
// the eviction confirmation after its phi suspicion — never at the floor.
func TestAdaptivePriorIsTheFixedRule(t *testing.T) {
	cfg := adaptiveRule()
	s := newSim(t, cfg, nil)
	s.add("new", "")
	s.run(30 * time.Second)
	if st := s.core.Status("new", s.now).Link; !st.Prior || st.EvictionTimeout != 0 {
		t.Fatalf("new node: %+v, want the prior", st)
	}
	s.silence("new")
	got := s.run(10 * time.Second)
	sus, ok := first(got, IntentSuspect, "new")
	ev, ok2 := first(got, IntentEvict, "new")
	if !ok || !ok2 {
		t.Fatalf("silent new node not suspected and evicted: %+v", got)
	}
	if d := ev.At.Sub(sus.At); d < cfg.EvictionConfirm || d >= cfg.EvictionConfirm+tick {
		t.Errorf("evicted %v after its suspicion, want the confirmation %v", d, cfg.EvictionConfirm)
	}
	if d := ev.At.Sub(ev.LastHeartbeat); d <= cfg.Silence.Floor {
		t.Errorf("evicted %v after the last heartbeat: at or before the floor %v", d, cfg.Silence.Floor)
	}
}

// A suspected node that sends heartbeats too few to recover and falls
// silent again is evicted only once it has been silent for its whole
// timeout again.
func TestAdaptiveSecondSilenceWaitsTheTimeout(t *testing.T) {
	cfg := adaptiveRule()
	cfg.Silence.Floor = 3 * time.Second // suspicion (phi 8, ≈2.6 s) comes first
	s := learned(t, cfg, nil, "r")
	timeout := s.core.Status("r", s.now).Link.EvictionTimeout
	s.gap = func(string) time.Duration { return time.Second }
	s.silence("r")
	var got []Intent
	for len(got) == 0 || count(got, IntentSuspect, "r") == 0 {
		got = append(got, s.run(tick)...)
	}
	s.resume("r")
	got = append(got, s.run(1100*time.Millisecond)...)
	s.silence("r")
	got = append(got, s.run(timeout+2*time.Second)...)
	if n := count(got, IntentRecover, "r"); n != 0 {
		t.Fatalf("recovered after two heartbeats")
	}
	ev, ok := first(got, IntentEvict, "r")
	if !ok {
		t.Fatalf("never evicted after its second silence: %+v", got)
	}
	if d := ev.At.Sub(ev.LastHeartbeat); d < timeout {
		t.Errorf("second silence evicted %v after the last heartbeat, before the timeout %v", d, timeout)
	}
}

// A policy's phiThreshold scales the node's share of the budget: phi 10
// (a hundredth of the false evictions) gives a longer timeout than the
// default 8, phi 6 a shorter one.
func TestPolicyThresholdScalesTheBudget(t *testing.T) {
	s := learned(t, adaptiveRule(), nil, "r")
	base := s.core.Status("r", s.now).Link
	s.core.SetThreshold("r", 10)
	careful := s.core.Status("r", s.now).Link
	s.core.SetThreshold("r", 6)
	eager := s.core.Status("r", s.now).Link
	if !(eager.EvictionTimeout < base.EvictionTimeout && base.EvictionTimeout < careful.EvictionTimeout) {
		t.Fatalf("timeouts at phi 6, 8, 10: %v, %v, %v; want increasing", eager.EvictionTimeout, base.EvictionTimeout, careful.EvictionTimeout)
	}
	if !(eager.FalseEvictionRate > base.FalseEvictionRate && base.FalseEvictionRate > careful.FalseEvictionRate) {
		t.Errorf("estimated rates at phi 6, 8, 10: %g, %g, %g; want decreasing", eager.FalseEvictionRate, base.FalseEvictionRate, careful.FalseEvictionRate)
	}
}

// A node whose link needs more than the ceiling is reported (IntentLink),
// held at the ceiling, and exported as too poor; with a ceiling it fits
// under, it ends up reported fine.
func TestLinkTooPoorIsReported(t *testing.T) {
	for _, tc := range []struct {
		ceiling time.Duration
		poor    bool
	}{{2 * time.Second, true}, {time.Minute, false}} {
		t.Run(tc.ceiling.String(), func(t *testing.T) {
			reg := prometheus.NewPedanticRegistry()
			m, err := NewMetrics(reg)
			if err != nil {
				t.Fatal(err)
			}
			cfg := adaptiveRule()
			cfg.Silence.Ceiling = tc.ceiling
			s := learned(t, cfg, m, "r", "r2")
			st := s.core.Status("r", s.now).Link
			var last *Intent // the last report wins: a short history may have needed more for a while
			for i := range s.intents {
				if s.intents[i].Kind == IntentLink && s.intents[i].Node == "r" {
					last = &s.intents[i]
				}
			}
			if st.TooPoor != tc.poor || (last != nil && last.Active) != tc.poor {
				t.Fatalf("ceiling %v: %+v, last link intent %+v; want too poor: %v", tc.ceiling, st, last, tc.poor)
			}
			if tc.poor {
				in := *last
				if !in.Active || in.EvictionTimeout != tc.ceiling || st.EvictionTimeout != tc.ceiling || st.Needed <= tc.ceiling {
					t.Errorf("intent %+v, status %+v; want active, held at %v, needing more", in, st, tc.ceiling)
				}
			}
			got := gauges(t, reg)
			want := map[string]float64{
				"roam_node_eviction_timeout_seconds": st.EvictionTimeout.Seconds(),
				"roam_node_false_eviction_rate":      st.FalseEvictionRate,
				"roam_node_link_too_poor":            map[bool]float64{true: 1}[tc.poor],
			}
			for name, v := range want {
				if g, ok := got[name+"/r"]; !ok || math.Abs(g-v) > 1e-9 {
					t.Errorf("%s{node=r} = %v (exported: %v), want %v", name, g, ok, v)
				}
			}
		})
	}
}

// gauges reads every gauge with a node label as "name/node".
func gauges(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetType() != dto.MetricType_GAUGE {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "node" {
					out[fmt.Sprintf("%s/%s", mf.GetName(), l.GetValue())] = m.GetGauge().GetValue()
				}
			}
		}
	}
	return out
}

// A real outage (longer than the Lease duration and a renewal) does not
// lengthen the node's timeout: after an hour's outage it is what it was.
func TestOutageDoesNotGrowTheTimeout(t *testing.T) {
	s := learned(t, adaptiveRule(), nil, "r")
	before := s.core.Status("r", s.now).Link
	s.silence("r")
	s.run(time.Hour)
	s.resume("r")
	s.run(2 * time.Second)
	if after := s.core.Status("r", s.now).Link; after.EvictionTimeout != before.EvictionTimeout {
		t.Fatalf("timeout %v before an hour's outage, %v after", before.EvictionTimeout, after.EvictionTimeout)
	}
}

func TestAdaptiveConfigValidate(t *testing.T) {
	for _, f := range []func(*CoreConfig){
		func(c *CoreConfig) { c.Silence.Budget = 0 },
		func(c *CoreConfig) { c.Silence.Floor = 2 * c.Silence.Ceiling },
		func(c *CoreConfig) { c.Silence.HalfLife = time.Minute },
	} {
		c := adaptiveRule()
		f(&c)
		if _, err := NewCore(c, t0, nil); err == nil {
			t.Errorf("%+v accepted", c.Silence)
		}
		c.Adaptive = false
		if _, err := NewCore(c, t0, nil); err != nil {
			t.Errorf("fixed rule rejected for an unused silence config: %v", err)
		}
	}
}

// The RoamReachable message tells the node's eviction timeout and its
// estimated false evictions, that a new node is on the prior, and what a
// too poor link would need.
func TestLinkNoteInTheCondition(t *testing.T) {
	for _, tc := range []struct {
		st   LinkStatus
		want []string
	}{
		{LinkStatus{}, nil},
		{LinkStatus{Prior: true}, []string{"too little history", "phi threshold"}},
		{LinkStatus{EvictionTimeout: 3210 * time.Millisecond, FalseEvictionRate: 0.8}, []string{"evicted after 3.21s of silence", "0.8 false evictions per 1000 h"}},
		{LinkStatus{EvictionTimeout: 15 * time.Second, Needed: 42 * time.Second, FalseEvictionRate: 30, TooPoor: true},
			[]string{"evicted after 15s of silence, the ceiling", "would need 42s", "30 false evictions per 1000 h"}},
	} {
		got := linkNote(tc.st)
		if len(tc.want) == 0 && got != "" {
			t.Errorf("%+v: %q, want nothing", tc.st, got)
		}
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%+v: %q lacks %q", tc.st, got, w)
			}
		}
	}
}

// adaptiveRule is the default configuration with adaptive eviction
// timeouts on.
func adaptiveRule() CoreConfig {
	c := DefaultCoreConfig()
	c.Adaptive = true
	return c
}
