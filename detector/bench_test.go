package detector

import (
	"fmt"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

// BenchmarkSourceLeaseUpdate is one heartbeat through the Lease informer's
// handler: renewTime comparison, Core lookup, phi window update, deadline.
func BenchmarkSourceLeaseUpdate(b *testing.B) {
	m, _ := NewMetrics(nil)
	core, _ := NewCore(DefaultCoreConfig(), t0, m)
	clk := clocktesting.NewFakeClock(t0)
	src := NewSource(core, clk, nil, nil)
	const nodes = 1000
	type pair struct{ a, b interface{} }
	ls := make([]pair, nodes)
	for i := range ls {
		name := fmt.Sprintf("robot-%d", i)
		ls[i] = pair{lease(name, t0, 4), lease(name, t0.Add(time.Second), 4)}
		src.OnLeaseAdd(ls[i].a)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		p := ls[i%nodes]
		if (i/nodes)%2 == 0 {
			src.OnLeaseUpdate(p.a, p.b)
		} else {
			src.OnLeaseUpdate(p.b, p.a)
		}
		i++
		if i%nodes == 0 {
			clk.Step(time.Second)
		}
	}
}

// BenchmarkTick10k is one decision-loop sweep over 10,000 live nodes.
func BenchmarkTick10k(b *testing.B) {
	m, _ := NewMetrics(nil)
	core, _ := NewCore(DefaultCoreConfig(), t0, m)
	now := t0
	for i := range 10000 {
		core.Heartbeat(fmt.Sprintf("robot-%d", i), time.Second, now)
	}
	now = now.Add(time.Minute)
	for i := range 10000 {
		core.Heartbeat(fmt.Sprintf("robot-%d", i), time.Second, now)
	}
	buf := core.Tick(now, nil)
	b.ReportAllocs()
	for b.Loop() {
		buf = core.Tick(now.Add(500*time.Millisecond), buf[:0])
	}
}
