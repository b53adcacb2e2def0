// Package network models how a robot's node-Lease heartbeats reach the
// control plane over Wi-Fi: the kubelet's jittered renew period, per-link
// latency jitter, independent loss, loss bursts (a Gilbert–Elliott channel),
// dropouts (the robot leaves the network for a while) and deaths (the robot
// is gone until it is repaired). It is seeded and clock-free: it produces
// the arrival times of one robot's heartbeats together with the ground truth
// of when the robot really was unreachable, which is what detectors are
// scored against.
package network

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// Jitter names a latency-jitter distribution.
type Jitter string

const (
	// Normal jitter: |N(0, scale)|, light-tailed (a clean link).
	Normal Jitter = "normal"
	// LogNormal jitter: scale·e^(shape·N(0,1)), median scale (a congested
	// Wi-Fi link).
	LogNormal Jitter = "lognormal"
	// Pareto jitter with the given scale and tail index shape, minus the
	// scale: heavy-tailed, with rare very late heartbeats.
	Pareto Jitter = "pareto"
)

// Link is one class of robot network link.
type Link struct {
	Name string
	// Share of the fleet with this link (shares are normalised).
	Share float64
	// Latency is the fixed one-way delay to the apiserver and on to the
	// detector's informer.
	Latency time.Duration
	// Jitter distribution, its scale and its shape (log-normal σ, Pareto
	// tail index; unused for normal).
	Jitter      Jitter
	JitterScale time.Duration
	JitterShape float64
	// Loss is the independent probability that a packet is lost. A renew
	// is an HTTP request over TCP, so a lost packet is retransmitted after
	// a retransmission timeout (200 ms, doubling): loss delays a heartbeat,
	// and only loses it when the delay exceeds the request timeout.
	Loss float64
	// BurstsPerHour is how often the link blacks out briefly (a Wi-Fi
	// hiccup: interference, a roam between access points); a blackout lasts
	// an exponential time with mean BurstMean. Renews sent during a
	// blackout go through when it ends, unless the request times out first.
	// Hiccups are not outages: suspecting a robot for one is a false
	// suspicion.
	BurstsPerHour float64
	BurstMean     time.Duration
}

// Model is the fleet's network and failure model.
type Model struct {
	// RenewInterval is the kubelet's Lease renew period (a quarter of
	// nodeLeaseDurationSeconds); the kubelet adds up to 4 % jitter.
	RenewInterval time.Duration
	// RequestTimeout bounds one renew: the kubelet's heartbeat client times
	// out after min(nodeLeaseDurationSeconds, 10 s), 4 s at a 1 s renew.
	RequestTimeout time.Duration
	Links          []Link
	// DropoutsPerHour per robot; a dropout lasts a log-normal time with
	// median DropoutMedian, never less than DropoutMin.
	DropoutsPerHour float64
	DropoutMedian   time.Duration
	DropoutMin      time.Duration
	// DeathsPerDay per robot; a dead robot sends nothing for RepairTime,
	// then rejoins.
	DeathsPerDay float64
	RepairTime   time.Duration
	// SpikesPerHour per robot: a slow period (airtime contention, a rate
	// fall-back after a roam, a queue filling in the access point) that
	// delays every packet sent in it, the Lease renewals and the direct
	// datagrams alike, by one extra delay drawn per spike (exponential,
	// mean SpikeDelay); its length is exponential with mean SpikeLength.
	SpikesPerHour float64
	SpikeLength   time.Duration
	SpikeDelay    time.Duration
}

// DefaultModel is the sim's default Wi-Fi model, a managed site network:
// most robots on a clean link, some on a congested one with log-normal
// delays, a few roaming between access points with heavy-tailed delays and
// frequent sub-second blackouts (fast-roaming handoffs); a robot leaves
// Wi-Fi about every 2 hours and dies about every 10 days. The tails decide
// how often a live robot falls silent for 2–3 s, so they are flags too.
func DefaultModel() Model {
	return Model{
		RenewInterval:  time.Second,
		RequestTimeout: 4 * time.Second,
		Links: []Link{
			{Name: "clean", Share: 0.6, Latency: 10 * time.Millisecond, Jitter: Normal, JitterScale: 10 * time.Millisecond, Loss: 0.001,
				BurstsPerHour: 1, BurstMean: 100 * time.Millisecond},
			{Name: "congested", Share: 0.3, Latency: 30 * time.Millisecond, Jitter: LogNormal, JitterScale: 50 * time.Millisecond, JitterShape: 0.6,
				Loss: 0.01, BurstsPerHour: 4, BurstMean: 150 * time.Millisecond},
			{Name: "roaming", Share: 0.1, Latency: 50 * time.Millisecond, Jitter: Pareto, JitterScale: 150 * time.Millisecond, JitterShape: 4.5,
				Loss: 0.01, BurstsPerHour: 12, BurstMean: 200 * time.Millisecond},
		},
		DropoutsPerHour: 0.5,
		DropoutMedian:   30 * time.Second,
		DropoutMin:      5 * time.Second,
		DeathsPerDay:    0.1,
		RepairTime:      10 * time.Minute,
		SpikesPerHour:   2,
		SpikeLength:     2 * time.Second,
		SpikeDelay:      200 * time.Millisecond,
	}
}

// ModelNames lists the models NamedModel knows, the default first.
func ModelNames() []string { return []string{"default", "poor-minority", "harsh"} }

// NamedModel returns a named network model:
//
//   - "default": DefaultModel, a managed site network;
//   - "poor-minority": most robots on clean links, a third on busy ones
//     (log-normal delays with a longer tail, 2 % loss, 10 blackouts an
//     hour), and 15 % on poor links: Pareto delays with tail index 3,
//     3 % loss and a sub-second blackout a minute (mean 400 ms);
//   - "harsh": a warehouse of metal shelving, where most links are
//     degraded: 30 % clean, 40 % busy (log-normal shape 1, 3 % loss, 20
//     blackouts an hour of mean 300 ms), 30 % poor (Pareto tail index 2.5
//     with scale 300 ms, 5 % loss, 120 blackouts an hour of mean 500 ms),
//     and robots leaving Wi-Fi once an hour.
//
// Dropouts and deaths are DefaultModel's unless said otherwise.
func NamedModel(name string) (Model, error) {
	m := DefaultModel()
	clean := m.Links[0]
	switch name {
	case "default":
	case "poor-minority":
		clean.Share = 0.52
		m.Links = []Link{clean,
			{Name: "busy", Share: 0.33, Latency: 30 * time.Millisecond, Jitter: LogNormal, JitterScale: 80 * time.Millisecond, JitterShape: 0.8,
				Loss: 0.02, BurstsPerHour: 10, BurstMean: 250 * time.Millisecond},
			{Name: "poor", Share: 0.15, Latency: 60 * time.Millisecond, Jitter: Pareto, JitterScale: 250 * time.Millisecond, JitterShape: 3,
				Loss: 0.03, BurstsPerHour: 60, BurstMean: 400 * time.Millisecond},
		}
	case "harsh":
		clean.Share = 0.3
		m.Links = []Link{clean,
			{Name: "busy", Share: 0.4, Latency: 40 * time.Millisecond, Jitter: LogNormal, JitterScale: 100 * time.Millisecond, JitterShape: 1,
				Loss: 0.03, BurstsPerHour: 20, BurstMean: 300 * time.Millisecond},
			{Name: "poor", Share: 0.3, Latency: 80 * time.Millisecond, Jitter: Pareto, JitterScale: 300 * time.Millisecond, JitterShape: 2.5,
				Loss: 0.05, BurstsPerHour: 120, BurstMean: 500 * time.Millisecond},
		}
		m.DropoutsPerHour = 1
	default:
		return Model{}, fmt.Errorf("unknown network model %q (want one of %s)", name, strings.Join(ModelNames(), ", "))
	}
	return m, nil
}

// Validate reports the first nonsensical parameter.
func (m Model) Validate() error {
	if m.RenewInterval <= 0 {
		return fmt.Errorf("renew interval must be > 0, got %s", m.RenewInterval)
	}
	if m.RequestTimeout <= 0 {
		return fmt.Errorf("request timeout must be > 0, got %s", m.RequestTimeout)
	}
	if len(m.Links) == 0 {
		return fmt.Errorf("at least one link class is needed")
	}
	var share float64
	for _, l := range m.Links {
		if l.Share < 0 || l.Loss < 0 || l.Loss >= 1 || l.BurstsPerHour < 0 {
			return fmt.Errorf("link %q: share and rates must be ≥ 0 and loss in [0,1)", l.Name)
		}
		if l.BurstsPerHour > 0 && l.BurstMean <= 0 {
			return fmt.Errorf("link %q: bursts need a burstmean > 0", l.Name)
		}
		switch l.Jitter {
		case Normal:
		case LogNormal, Pareto:
			if l.JitterShape <= 0 {
				return fmt.Errorf("link %q: %s jitter needs shape > 0", l.Name, l.Jitter)
			}
		default:
			return fmt.Errorf("link %q: unknown jitter %q (want normal, lognormal or pareto)", l.Name, l.Jitter)
		}
		share += l.Share
	}
	if share <= 0 {
		return fmt.Errorf("link shares sum to 0")
	}
	if m.DropoutsPerHour < 0 || m.DeathsPerDay < 0 {
		return fmt.Errorf("dropout and death rates must be ≥ 0")
	}
	if m.SpikesPerHour < 0 || (m.SpikesPerHour > 0 && (m.SpikeLength <= 0 || m.SpikeDelay <= 0)) {
		return fmt.Errorf("spikes: rate must be ≥ 0, and with spikes their length and delay > 0 (got %g/h, %s, %s)", m.SpikesPerHour, m.SpikeLength, m.SpikeDelay)
	}
	return nil
}

// ParseLinks parses a link list: classes separated by ";", each
// "name:share:key=value,...", keys latency, jitter (normal|lognormal|pareto),
// scale, shape, loss, bursts (blackouts per hour), burstmean (duration). Example:
// "clean:0.6:latency=20ms,jitter=normal,scale=10ms,loss=0.001".
func ParseLinks(spec string) ([]Link, error) {
	var links []Link
	for _, part := range strings.Split(spec, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		fields := strings.SplitN(part, ":", 3)
		if len(fields) < 2 {
			return nil, fmt.Errorf("link %q: want name:share[:key=value,...]", part)
		}
		share, err := strconv.ParseFloat(fields[1], 64)
		if err != nil {
			return nil, fmt.Errorf("link %q: share: %w", fields[0], err)
		}
		l := Link{Name: fields[0], Share: share, Jitter: Normal}
		if len(fields) == 3 {
			for _, kv := range strings.Split(fields[2], ",") {
				k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
				if !ok {
					return nil, fmt.Errorf("link %q: %q is not key=value", l.Name, kv)
				}
				if err := l.set(k, v); err != nil {
					return nil, fmt.Errorf("link %q: %s: %w", l.Name, k, err)
				}
			}
		}
		links = append(links, l)
	}
	return links, nil
}

func (l *Link) set(key, value string) error {
	var err error
	switch key {
	case "latency":
		l.Latency, err = time.ParseDuration(value)
	case "scale":
		l.JitterScale, err = time.ParseDuration(value)
	case "jitter":
		l.Jitter = Jitter(value)
	case "shape":
		l.JitterShape, err = strconv.ParseFloat(value, 64)
	case "loss":
		l.Loss, err = strconv.ParseFloat(value, 64)
	case "bursts":
		l.BurstsPerHour, err = strconv.ParseFloat(value, 64)
	case "burstmean":
		l.BurstMean, err = time.ParseDuration(value)
	default:
		return fmt.Errorf("unknown key (want latency, jitter, scale, shape, loss, bursts, burstmean)")
	}
	return err
}

// FormatLinks renders links in ParseLinks' syntax, for reports.
func FormatLinks(links []Link) string {
	parts := make([]string, len(links))
	for i, l := range links {
		parts[i] = fmt.Sprintf("%s:%g:latency=%s,jitter=%s,scale=%s,shape=%g,loss=%g,bursts=%g,burstmean=%s",
			l.Name, l.Share, l.Latency, l.Jitter, l.JitterScale, l.JitterShape, l.Loss, l.BurstsPerHour, l.BurstMean)
	}
	return strings.Join(parts, ";")
}

// Outage is an interval during which a robot really was unreachable.
type Outage struct {
	Start, End time.Duration
	Death      bool
}

// Robot generates one robot's heartbeat arrivals. Times are offsets from
// the start of the simulation.
type Robot struct {
	Link    *Link
	model   *Model
	rng     *rand.Rand
	horizon time.Duration

	sent    time.Duration // time of the last renew attempt
	arrived time.Duration // arrival of the last delivered heartbeat
	outages []Outage      // ground truth, in time order
	nextOut int           // first outage that has not ended at r.sent
	// blackout is the current or next hiccup [start, end).
	blackoutStart, blackoutEnd time.Duration
	// blackouts drawn so far, in time order, shared with the datagram path.
	blackouts []span
	// spikes over the whole run, in time order (their own random stream,
	// so they do not change the other draws); spikeAt is the Lease path's
	// cursor.
	spikes  []span
	spikeAt int
}

// span is a time interval [start, end) with an extra delay (spikes).
type span struct {
	start, end, delay time.Duration
}

// NewRobot returns robot index's generator; the same seed and index always
// give the same trace, whatever else runs.
func (m *Model) NewRobot(seed uint64, index int, horizon time.Duration) *Robot {
	rng := rand.New(rand.NewPCG(seed, uint64(index)*0x9E3779B97F4A7C15+1))
	r := &Robot{model: m, rng: rng, horizon: horizon, Link: m.pickLink(rng)}
	r.outages = m.outages(rng, horizon)
	r.spikes = m.spikes(seed, index, horizon)
	r.blackoutStart, r.blackoutEnd = horizon, horizon
	r.nextBlackout(0)
	// Robots boot at a random phase of the renew period.
	r.sent = -time.Duration(rng.Float64() * float64(m.RenewInterval))
	r.arrived = math.MinInt64
	return r
}

func (m *Model) pickLink(rng *rand.Rand) *Link {
	var total float64
	for _, l := range m.Links {
		total += l.Share
	}
	x := rng.Float64() * total
	for i := range m.Links {
		x -= m.Links[i].Share
		if x < 0 {
			return &m.Links[i]
		}
	}
	return &m.Links[len(m.Links)-1]
}

// outages draws the robot's dropouts and deaths as Poisson processes; an
// outage starting inside another extends it instead of overlapping.
func (m *Model) outages(rng *rand.Rand, horizon time.Duration) []Outage {
	var out []Outage
	draw := func(ratePerHour float64, death bool) {
		if ratePerHour <= 0 {
			return
		}
		for t := time.Duration(0); ; {
			t += time.Duration(rng.ExpFloat64() / ratePerHour * float64(time.Hour))
			if t >= horizon {
				return
			}
			var d time.Duration
			if death {
				d = m.RepairTime
			} else {
				d = time.Duration(float64(m.DropoutMedian) * math.Exp(rng.NormFloat64()))
				d = max(d, m.DropoutMin)
			}
			out = append(out, Outage{Start: t, End: t + d, Death: death})
		}
	}
	draw(m.DropoutsPerHour, false)
	draw(m.DeathsPerDay/24, true)
	sortOutages(out)
	merged := out[:0]
	for _, o := range out {
		if n := len(merged); n > 0 && o.Start <= merged[n-1].End {
			merged[n-1].End = max(merged[n-1].End, o.End)
			merged[n-1].Death = merged[n-1].Death || o.Death
			continue
		}
		merged = append(merged, o)
	}
	return merged
}

func sortOutages(o []Outage) {
	// Insertion sort: a robot has a handful of outages a day.
	for i := 1; i < len(o); i++ {
		for j := i; j > 0 && o[j].Start < o[j-1].Start; j-- {
			o[j], o[j-1] = o[j-1], o[j]
		}
	}
}

// Outages returns the robot's ground-truth outages in time order.
func (r *Robot) Outages() []Outage { return r.outages }

// Next returns the arrival time of the robot's next delivered heartbeat,
// or false when the horizon is reached. Arrivals are strictly increasing:
// the kubelet renews synchronously, so a late renew delays the next one.
func (r *Robot) Next() (time.Duration, bool) {
	for {
		period := float64(r.model.RenewInterval) * (1 + 0.04*r.rng.Float64())
		r.sent += time.Duration(period)
		if r.sent >= r.horizon {
			return 0, false
		}
		if o := r.outage(r.sent); o != nil {
			if o.Death {
				continue // a dead robot sends nothing
			}
			// Out of the network: the request waits for the link or times out.
			if o.End-r.sent >= r.model.RequestTimeout {
				r.sent += r.model.RequestTimeout
				continue
			}
			r.sent = o.End
		}
		ready := r.sent
		for r.blackoutEnd <= ready {
			r.nextBlackout(r.blackoutEnd)
		}
		if r.blackoutStart <= ready {
			ready = r.blackoutEnd
		}
		at := ready + r.Link.Latency + r.jitter() + r.retransmissions() + spikeDelay(r.spikes, &r.spikeAt, ready)
		if at-r.sent >= r.model.RequestTimeout {
			r.sent += r.model.RequestTimeout // the request timed out: lost
			continue
		}
		if at <= r.arrived {
			at = r.arrived + time.Millisecond
		}
		if at >= r.horizon {
			return 0, false
		}
		r.arrived = at
		r.sent = max(r.sent, at-r.Link.Latency) // the kubelet waits for the answer
		return at, true
	}
}

// nextBlackout draws the first hiccup starting after t.
func (r *Robot) nextBlackout(t time.Duration) {
	if r.Link.BurstsPerHour <= 0 {
		r.blackoutStart, r.blackoutEnd = r.horizon, r.horizon+1
		return
	}
	r.blackoutStart = t + time.Duration(r.rng.ExpFloat64()/r.Link.BurstsPerHour*float64(time.Hour))
	r.blackoutEnd = r.blackoutStart + time.Duration(r.rng.ExpFloat64()*float64(r.Link.BurstMean))
	r.blackouts = append(r.blackouts, span{start: r.blackoutStart, end: r.blackoutEnd})
}

// spikes draws a robot's delay spikes as a Poisson process from a stream
// of their own.
func (m *Model) spikes(seed uint64, index int, horizon time.Duration) []span {
	if m.SpikesPerHour <= 0 {
		return nil
	}
	rng := rand.New(rand.NewPCG(seed^0x5eed5b1c, uint64(index)*0x9E3779B97F4A7C15+2))
	var out []span
	for t := time.Duration(0); ; {
		t += time.Duration(rng.ExpFloat64() / m.SpikesPerHour * float64(time.Hour))
		if t >= horizon {
			return out
		}
		l := time.Duration(rng.ExpFloat64() * float64(m.SpikeLength))
		d := time.Duration(rng.ExpFloat64() * float64(m.SpikeDelay))
		out = append(out, span{start: t, end: t + l, delay: d})
		t += l // spikes do not overlap
	}
}

// spikeDelay is the extra delay of a packet sent at t; *at is a cursor
// into spikes for non-decreasing t.
func spikeDelay(spikes []span, at *int, t time.Duration) time.Duration {
	for *at < len(spikes) && spikes[*at].end <= t {
		*at++
	}
	if *at < len(spikes) && spikes[*at].start <= t {
		return spikes[*at].delay
	}
	return 0
}

// outage returns the outage t falls in, if any; t never decreases.
func (r *Robot) outage(t time.Duration) *Outage {
	for r.nextOut < len(r.outages) && r.outages[r.nextOut].End <= t {
		r.nextOut++
	}
	if r.nextOut < len(r.outages) && r.outages[r.nextOut].Start <= t {
		return &r.outages[r.nextOut]
	}
	return nil
}

// minRTO is Linux's minimum TCP retransmission timeout.
const minRTO = 200 * time.Millisecond

// retransmissions is the delay TCP adds to deliver a renew over a lossy
// link: each lost transmission costs a retransmission timeout, doubling.
func (r *Robot) retransmissions() time.Duration {
	var d time.Duration
	for rto := minRTO; r.Link.Loss > 0 && r.rng.Float64() < r.Link.Loss && d < r.model.RequestTimeout; rto *= 2 {
		d += rto
	}
	return d
}

func (r *Robot) jitter() time.Duration { return r.Link.jitter(r.rng) }

// jitter draws one packet's jitter from rng.
func (l *Link) jitter(rng *rand.Rand) time.Duration {
	s := float64(l.JitterScale)
	switch l.Jitter {
	case LogNormal:
		return time.Duration(s * math.Exp(l.JitterShape*rng.NormFloat64()))
	case Pareto:
		// Pareto(scale, shape) minus its scale, so the minimum extra delay is 0.
		return time.Duration(s*math.Pow(1-rng.Float64(), -1/l.JitterShape) - s)
	default:
		return time.Duration(math.Abs(rng.NormFloat64()) * s)
	}
}
