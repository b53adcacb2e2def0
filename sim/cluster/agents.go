package cluster

import (
	"context"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/roam-dev/roam/agent/publish"
	"github.com/roam-dev/roam/agent/state"
)

// agents runs roam-agent's publisher for every robot, in-process: what a
// robot senses (its context, zone, location, battery) reaches its Node
// only through the same rate-limited server-side apply the real agent
// uses, and every Node write it costs is counted.
type agents struct {
	pubs map[string]*publish.Publisher

	mu     sync.Mutex
	writes map[publish.Kind]int
}

// startAgents starts a publisher per robot; they stop with ctx.
func startAgents(ctx context.Context, client kubernetes.Interface, robots []*robot) *agents {
	a := &agents{pubs: map[string]*publish.Publisher{}, writes: map[publish.Kind]int{}}
	for _, r := range robots {
		p := publish.New(publish.NewNodeApplier(client, r.spec.Name, publish.ApplierOptions{}),
			publish.Options{Limits: publish.DefaultLimits(), OnWrite: a.count})
		a.pubs[r.spec.Name] = p
		go p.Run(ctx)
	}
	return a
}

func (a *agents) count(k publish.Kind) {
	a.mu.Lock()
	a.writes[k]++
	a.mu.Unlock()
}

// sense hands robot name's agent what the robot senses now.
func (a *agents) sense(name string, s state.State) {
	a.pubs[name].Update(s)
}

// waitPublished waits until every agent has written the newest state.
func (a *agents) waitPublished(ctx context.Context, timeout time.Duration) error {
	return wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		for _, p := range a.pubs {
			pub, ok := p.Published()
			if !ok || !pub.Equal(p.Desired()) {
				return false, nil
			}
		}
		return true, nil
	})
}

// Writes returns the Node writes of all agents by kind.
func (a *agents) Writes() map[publish.Kind]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[publish.Kind]int, len(a.writes))
	for k, v := range a.writes {
		out[k] = v
	}
	return out
}

// sensed is what robot spec senses at boot.
func (r *robotSpec) sensed() state.State {
	b := float64(r.Battery)
	return state.State{Context: r.Context, Zone: zoneOf(r.Context), Location: &state.Location{X: r.X, Y: r.Y}, Battery: &b}
}

// AgentWritesLine says what the fleet's sensing cost in Node writes.
func (r *Result) AgentWritesLine() string {
	writes, robots, length := r.AgentWrites, r.Config.Robots, r.RunLength()
	total := 0
	for _, n := range writes {
		total += n
	}
	perRobotHour := 0.0
	if robots > 0 && length > 0 {
		perRobotHour = float64(total) / float64(robots) / length.Hours()
	}
	return fmt.Sprintf("agent node writes: %d (labels %d, location %d, battery %d) for %d robots in %s, %.1f per robot-hour",
		total, writes[string(publish.KindLabels)], writes[string(publish.KindLocation)], writes[string(publish.KindBattery)], robots, length.Round(time.Second), perRobotHour)
}
