package detector

import (
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/roam-dev/roam/policies"
)

func lease(node string, renew time.Time, seconds int32) *coordinationv1.Lease {
	rt := metav1.NewMicroTime(renew)
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: node, Namespace: NodeLeaseNamespace},
		Spec: coordinationv1.LeaseSpec{RenewTime: &rt, LeaseDurationSeconds: &seconds}}
}

func TestSourceLeaseHeartbeatsUseOwnClock(t *testing.T) {
	core, err := NewCore(DefaultCoreConfig(), t0, nil)
	if err != nil {
		t.Fatal(err)
	}
	clk := clocktesting.NewFakeClock(t0)
	s := NewSource(core, clk, nil, nil)

	// The robot's clock is an hour behind and later jumps backwards: only
	// changes of renewTime count, stamped with the detector's clock.
	skew := t0.Add(-time.Hour)
	prev := lease("robot", skew, 4)
	s.OnLeaseAdd(prev)
	for i := 1; i <= 30; i++ {
		clk.Step(time.Second)
		renew := skew.Add(time.Duration(i) * time.Second)
		if i == 20 {
			renew = skew.Add(-time.Minute) // clock jump backwards: still a change
		}
		cur := lease("robot", renew, 4)
		s.OnLeaseUpdate(prev, cur)
		s.OnLeaseUpdate(cur, cur) // resync: no change, no heartbeat
		prev = cur
	}
	st := core.Status("robot", clk.Now())
	if !st.LastHeartbeat.Equal(clk.Now()) {
		t.Errorf("last heartbeat = %v, want the detector's now %v", st.LastHeartbeat, clk.Now())
	}
	det := core.nodes[core.index["robot"]].det
	if m := det.Mean(); m < 990*time.Millisecond || m > 1010*time.Millisecond {
		t.Errorf("mean interval %v: want 1 s (from the 4 s lease prior and observed 1 s changes)", m)
	}
	// Nothing happened for 2 s of detector time: phi rises although the
	// robot's renewTime claims the future.
	clk.Step(3 * time.Second)
	s.OnLeaseUpdate(prev, prev)
	if p := core.Phi("robot", clk.Now()); p < 8 {
		t.Errorf("phi after 3 s without a renewTime change = %v, want ≥ 8", p)
	}
	// Leases outside kube-node-lease are ignored.
	other := lease("x", t0, 4)
	other.Namespace = "default"
	s.OnLeaseAdd(other)
	if core.Status("x", clk.Now()).Known {
		t.Error("lease outside kube-node-lease tracked")
	}
}

func readyNode(name, zone string, hb time.Time) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{policies.ZoneLabel: zone}},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue,
			LastHeartbeatTime: metav1.NewTime(hb)}}}}
}

func TestSourceNodeFallbackAndDelete(t *testing.T) {
	core, _ := NewCore(DefaultCoreConfig(), t0, nil)
	clk := clocktesting.NewFakeClock(t0)
	leases := map[string]bool{"with-lease": true}
	s := NewSource(core, clk, func(n string) bool { return leases[n] }, func() bool { return true })

	a := readyNode("no-lease", "z1", t0.Add(-time.Hour))
	s.OnNodeAdd(a)
	s.OnNodeAdd(readyNode("with-lease", "z1", t0))
	if !core.Status("no-lease", clk.Now()).LastHeartbeat.Equal(t0) {
		t.Error("node without lease: Ready condition not a heartbeat")
	}
	if !core.Status("with-lease", clk.Now()).LastHeartbeat.IsZero() {
		t.Error("node with a lease got a heartbeat from its Ready condition")
	}
	clk.Step(10 * time.Second)
	b := readyNode("no-lease", "z2", t0.Add(-time.Hour)) // same heartbeat, new zone
	s.OnNodeUpdate(a, b)
	if !core.Status("no-lease", clk.Now()).LastHeartbeat.Equal(t0) {
		t.Error("unchanged lastHeartbeatTime counted as a heartbeat")
	}
	if core.zones["z2"] == nil || core.zones["z1"].total != 1 {
		t.Errorf("zone change not recorded: %+v", core.zones)
	}
	c := readyNode("no-lease", "z2", t0.Add(-50*time.Minute))
	s.OnNodeUpdate(b, c)
	if !core.Status("no-lease", clk.Now()).LastHeartbeat.Equal(clk.Now()) {
		t.Error("changed lastHeartbeatTime not a heartbeat")
	}
	s.OnNodeDelete(cache.DeletedFinalStateUnknown{Key: "no-lease", Obj: c})
	if core.Status("no-lease", clk.Now()).Known {
		t.Error("deleted node not forgotten")
	}
}

// After the heartbeat source was interrupted, a Node's fallback heartbeat
// shows the stream flows again (the quiet period ends a warm-up later),
// while a Node update that carries no heartbeat does not: the Node watch
// may be back before the Leases' is.
func TestNodeFallbackHeartbeatResumesSource(t *testing.T) {
	core, err := NewCore(DefaultCoreConfig(), t0, nil)
	if err != nil {
		t.Fatal(err)
	}
	clk := clocktesting.NewFakeClock(t0)
	s := NewSource(core, clk, nil, nil) // no Leases: every robot uses the fallback
	nodes := map[string]*corev1.Node{"a": readyNode("a", "", t0), "b": readyNode("b", "", t0)}
	for _, n := range nodes {
		s.OnNodeAdd(n)
	}
	var out []Intent
	run := func(d time.Duration, beating ...string) {
		for end := clk.Now().Add(d); clk.Now().Before(end); {
			clk.Step(tick)
			if clk.Now().Sub(t0)%time.Second == 0 {
				for _, name := range beating {
					cur := readyNode(name, "", clk.Now())
					s.OnNodeUpdate(nodes[name], cur)
					nodes[name] = cur
				}
			}
			out = core.Tick(clk.Now(), out)
		}
	}
	run(15*time.Second, "a", "b") // warmed up
	core.SourceInterrupted(clk.Now())
	run(20 * time.Second)
	// The Node watch is back first: a label change, no heartbeat.
	relabelled := nodes["a"].DeepCopy()
	relabelled.Labels["x"] = "y"
	s.OnNodeUpdate(nodes["a"], relabelled)
	nodes["a"] = relabelled
	run(20 * time.Second)
	if n := count(out, IntentSuspect, ""); n > 0 {
		t.Fatalf("%d suspicions before any heartbeat was delivered again", n)
	}
	run(20*time.Second, "a") // a's heartbeats flow again; b stays silent
	if _, ok := first(out, IntentSuspect, "b"); !ok {
		t.Error("b, silent after a's heartbeats resumed the source, was never suspected")
	}
	if n := count(out, IntentSuspect, "a"); n > 0 {
		t.Error("a, heartbeating, was suspected")
	}
}
