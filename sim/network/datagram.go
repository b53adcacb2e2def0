package network

import (
	"math/rand/v2"
	"time"
)

// Datagrams generates the arrivals of one robot's direct heartbeats: a
// UDP datagram every interval to the detector, each with its own delay
// (the link's latency and jitter, plus the delay spike it is sent in) and
// its own independent loss (no retransmission). It shares the robot's
// ground truth with the Lease path: its outages (nothing arrives), its
// blackouts (datagrams sent in one are lost) and its delay spikes. A
// datagram overtaken by a later one is dropped by the receiver's replay
// window, as roam-detector does, so arrivals are in sequence order.
type Datagrams struct {
	r        *Robot
	rng      *rand.Rand
	interval time.Duration
	sent     time.Duration // send time of the last datagram drawn
	nextOut  int           // first outage not ended at sent
	blackout int           // first blackout not ended at sent
	spikeAt  int
	// pending arrivals not yet overtaken, in increasing order; the first
	// is final once no later datagram can arrive before it.
	pending []time.Duration
	DatagramCounts
}

// DatagramCounts: datagrams sent, lost (outage, blackout, loss, arrival
// after the horizon) and overtaken (dropped as reordered).
type DatagramCounts struct {
	Sent, Lost, Overtaken int64
}

// Add adds o to c.
func (c *DatagramCounts) Add(o DatagramCounts) {
	c.Sent += o.Sent
	c.Lost += o.Lost
	c.Overtaken += o.Overtaken
}

// Counts reports the datagrams so far.
func (d *Datagrams) Counts() DatagramCounts { return d.DatagramCounts }

// Datagrams returns the robot's direct heartbeat channel with the given
// send interval. Call it once the Lease path (Next) is exhausted: the two
// share the blackouts Next drew.
func (r *Robot) Datagrams(seed uint64, index int, interval time.Duration) *Datagrams {
	rng := rand.New(rand.NewPCG(seed^0xda7a6, uint64(index)*0x9E3779B97F4A7C15+3))
	return &Datagrams{r: r, rng: rng, interval: interval, sent: -time.Duration(rng.Float64() * float64(interval))}
}

// Next returns the arrival time of the next datagram the detector
// accepts, or false at the horizon.
func (d *Datagrams) Next() (time.Duration, bool) {
	r := d.r
	for {
		// The first pending arrival is final once the next send, at the
		// link's least delay, cannot arrive before it.
		if len(d.pending) > 0 && d.pending[0] <= d.sent+d.interval+r.Link.Latency {
			at := d.pending[0]
			d.pending = d.pending[1:]
			return at, true
		}
		d.sent += d.interval
		if d.sent >= r.horizon {
			if len(d.pending) > 0 {
				at := d.pending[0]
				d.pending = d.pending[1:]
				return at, true
			}
			return 0, false
		}
		d.Sent++
		if d.inOutage(d.sent) || d.inBlackout(d.sent) || (r.Link.Loss > 0 && d.rng.Float64() < r.Link.Loss) {
			d.Lost++
			continue
		}
		at := d.sent + r.Link.Latency + r.Link.jitter(d.rng) + spikeDelay(r.spikes, &d.spikeAt, d.sent)
		if at >= r.horizon {
			d.Lost++ // arrives after the run
			continue
		}
		// Earlier datagrams arriving after this one are dropped as replays.
		for n := len(d.pending); n > 0 && d.pending[n-1] >= at; n = len(d.pending) {
			d.pending = d.pending[:n-1]
			d.Overtaken++
		}
		d.pending = append(d.pending, at)
	}
}

func (d *Datagrams) inOutage(t time.Duration) bool {
	o := d.r.outages
	for d.nextOut < len(o) && o[d.nextOut].End <= t {
		d.nextOut++
	}
	return d.nextOut < len(o) && o[d.nextOut].Start <= t
}

func (d *Datagrams) inBlackout(t time.Duration) bool {
	r := d.r
	for {
		for d.blackout < len(r.blackouts) && r.blackouts[d.blackout].end <= t {
			d.blackout++
		}
		if d.blackout < len(r.blackouts) {
			return r.blackouts[d.blackout].start <= t
		}
		if r.Link.BurstsPerHour <= 0 || r.blackoutStart >= r.horizon {
			return false
		}
		r.nextBlackout(r.blackoutEnd) // beyond what the Lease path drew
	}
}
