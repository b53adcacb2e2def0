package policy

import (
	"fmt"
	"math/rand/v2"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2/ktesting"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	st "k8s.io/kubernetes/pkg/scheduler/testing"

	"github.com/roam-dev/roam/policies"
)

// PreFilter's narrowing is exactly as correct as filtering: over seeded
// random fleets that change between cycles (robots change context, zone,
// battery and reachability, pods take and free cameras, robots leave and
// join, preemption-like copies are filtered in between), every node a brute-force evaluation of
// the governing policies passes is among PreFilter's nodes, every node
// PreFilter leaves out fails that evaluation, and PreFilter leaves out
// exactly the nodes where a require's node-object part is false (unless
// that is every node). Filter agrees with the brute force on every node.
func TestNarrowingAgreesWithBruteForce(t *testing.T) {
	pl := newTestPlugin(t,
		policyCM("hospital-apps", "medical-assistant", exampleData()),
		policyCM("hospital-apps", "scanner", map[string]string{
			"match":   `pod.labels["app"] == "scanner"`,
			"require": `(node.context == "store" || node.battery > 80) && node.devices["roam.dev/camera"] < 2`,
		}),
		policyCM("hospital-apps", "ward-bound", map[string]string{
			"match":   `pod.labels["ward"] != ""`,
			"require": `node.zone == pod.labels["ward"] && node.battery >= 20`,
		}),
		policyCM("hospital-apps", "tier", map[string]string{
			"match":   `pod.labels["tier"] != ""`,
			"require": `node.labels["tier"] == pod.labels["tier"]`, // reads the pod: no node-object part
		}),
	)
	ward := assistantPod("ward")
	ward.Labels["ward"] = "ward-1"
	tiered := st.MakePod().Namespace("hospital-apps").Name("tiered").Label("tier", "a").Label("app", "scanner").Obj()
	pods := []*v1.Pod{assistantPod("assistant"), ward, tiered,
		st.MakePod().Namespace("hospital-apps").Name("scanner").Label("app", "scanner").Obj()}

	logger, ctx := ktesting.NewTestContext(t)
	ev := policies.NewEvaluator()
	for seed := uint64(1); seed <= 5; seed++ {
		rng := rand.New(rand.NewPCG(seed, 23))
		fleet := randomFleet(rng, 40+rng.IntN(40))
		narrowed := 0
		for round := range 30 {
			switch round % 6 { // robots leave the fleet and join it
			case 2:
				i := rng.IntN(len(fleet))
				fleet = append(fleet[:i:i], fleet[i+1:]...)
			case 4:
				fleet = append(fleet, nodeInfo(randomRobot(rng, fmt.Sprintf("new-%d-%d", seed, round))))
			}
			infos := make([]fwk.NodeInfo, len(fleet))
			for i, ni := range fleet {
				infos[i] = ni
			}
			for _, pod := range pods {
				state := framework.NewCycleState()
				res, status := pl.PreFilter(ctx, state, pod, infos)
				if !status.IsSuccess() {
					t.Fatalf("seed %d round %d %s: PreFilter %v", seed, round, pod.Name, status)
				}
				ps := governing(state)
				for _, ni := range fleet {
					name := ni.Node().Name
					want := bruteForce(ev, ps, pod, ni)
					inStatic := staticPasses(ev, ps, ni.Node())
					kept := res.AllNodes() || res.NodeNames.Has(name)
					if want && !kept {
						t.Fatalf("seed %d round %d %s: %s passes the policies but PreFilter left it out", seed, round, pod.Name, name)
					}
					if !res.AllNodes() && kept != inStatic {
						t.Fatalf("seed %d round %d %s: %s kept=%v, want %v (the node-object parts)", seed, round, pod.Name, name, kept, inStatic)
					}
					filtered := pl.Filter(ctx, state, pod, ni)
					if got := filtered.IsSuccess(); got != want {
						t.Fatalf("seed %d round %d %s: Filter on %s = %v, brute force %v", seed, round, pod.Name, name, got, want)
					}
					if !inStatic && filtered.Code() != fwk.UnschedulableAndUnresolvable {
						t.Fatalf("seed %d round %d %s: Filter on %s, whose node-object part is false: %v, want UnschedulableAndUnresolvable", seed, round, pod.Name, name, filtered)
					}
				}
				if !res.AllNodes() {
					narrowed++
				}
				// A preemption-like dry run on a copy: a camera holder removed.
				ni := fleet[rng.IntN(len(fleet))]
				if len(ni.Pods) > 0 {
					cp := ni.SnapshotConcrete()
					if err := cp.RemovePod(logger, ni.Pods[0].GetPod()); err != nil {
						t.Fatal(err)
					}
					if got, want := pl.Filter(ctx, state.Clone(), pod, cp).IsSuccess(), bruteForce(ev, ps, pod, cp); got != want {
						t.Fatalf("seed %d round %d %s: Filter on a copy of %s = %v, brute force %v", seed, round, pod.Name, ni.Node().Name, got, want)
					}
				}
			}
			churn(t, rng, fleet, 1+rng.IntN(6))
		}
		if narrowed == 0 {
			t.Fatalf("seed %d: PreFilter never narrowed: the test exercised nothing", seed)
		}
	}
}

// bruteForce evaluates pod's policies on ni from scratch, as Filter must
// decide.
func bruteForce(ev *policies.Evaluator, ps []*policies.Policy, pod *v1.Pod, ni *framework.NodeInfo) bool {
	node := ni.Node()
	if hasUnreachableTaint(node) {
		return false
	}
	env := policies.Env{Node: policies.NodeEnvFor(node, ni.Requested.ScalarResources), Pod: policies.PodEnvFor(pod)}
	for _, p := range ps {
		if ok, err := p.Require(ev, &env); err != nil || !ok {
			return false
		}
	}
	return true
}

// staticPasses reports whether node passes every policy's node-object
// require part, evaluated from scratch.
func staticPasses(ev *policies.Evaluator, ps []*policies.Policy, node *v1.Node) bool {
	env := policies.NodeEnvFor(node, nil)
	for _, p := range ps {
		if !p.StaticRequire(ev, &env) {
			return false
		}
	}
	return true
}

func randomFleet(rng *rand.Rand, n int) []*framework.NodeInfo {
	fleet := make([]*framework.NodeInfo, n)
	for i := range fleet {
		fleet[i] = nodeInfo(randomRobot(rng, fmt.Sprintf("r%03d", i)))
	}
	return fleet
}

func randomRobot(rng *rand.Rand, name string) *v1.Node {
	contexts := []string{"hospital", "store", "warehouse"}
	n := robotNode(name, contexts[rng.IntN(len(contexts))], fmt.Sprintf("%d,%d", rng.IntN(100), rng.IntN(100)), fmt.Sprint(rng.IntN(4)))
	n.Labels[policies.ZoneLabel] = fmt.Sprintf("ward-%d", rng.IntN(3))
	n.Labels["tier"] = []string{"a", "b"}[rng.IntN(2)]
	n.Annotations[policies.BatteryAnnotation] = fmt.Sprint(rng.IntN(101))
	if rng.IntN(8) == 0 {
		n.Spec.Taints = []v1.Taint{{Key: policies.UnreachableTaint, Effect: v1.TaintEffectNoSchedule}}
	}
	return n
}

// churn changes k random robots of fleet: a new Node object (context,
// zone, battery, reachability), a pod taking a camera, or one leaving.
func churn(t *testing.T, rng *rand.Rand, fleet []*framework.NodeInfo, k int) {
	t.Helper()
	logger, _ := ktesting.NewTestContext(t)
	for range k {
		ni := fleet[rng.IntN(len(fleet))]
		switch rng.IntN(3) {
		case 0:
			ni.SetNode(randomRobot(rng, ni.Node().Name))
		case 1:
			name := fmt.Sprintf("holder-%d", rng.Uint64())
			ni.AddPod(st.MakePod().Namespace("x").Name(name).UID(name).Node(ni.Node().Name).
				Req(map[v1.ResourceName]string{"roam.dev/camera": "1"}).Obj())
		case 2:
			if len(ni.Pods) > 0 {
				if err := ni.RemovePod(logger, ni.Pods[rng.IntN(len(ni.Pods))].GetPod()); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}
