package policy

import (
	"context"
	"fmt"
	"testing"

	"github.com/roam-dev/roam/policies"
)

// A verdict table answers for the node versions recorded in it, up to
// verdictWays per set: one more version in a set takes the way of the
// oldest (the smallest generation); recording a version forgets the one it
// replaced, whose way the next version takes; and generations that
// cannot be keys (0: a NodeInfo built without one) are never recorded.
func TestVerdictTable(t *testing.T) {
	tbl := new(verdictTable)
	var gens []int64 // verdictWays+2 generations in one set
	for g := int64(1); len(gens) < verdictWays+2; g++ {
		if setIndex(g, verdictBits, verdictWays) == setIndex(1, verdictBits, verdictWays) {
			gens = append(gens, g)
		}
	}
	full, next := gens[:verdictWays], gens[verdictWays]
	check := func(gen int64, wantOK, wantKnown bool) {
		t.Helper()
		if ok, known := tbl.lookup(gen); ok != wantOK || known != wantKnown {
			t.Fatalf("lookup(%d) = %v, %v; want %v, %v", gen, ok, known, wantOK, wantKnown)
		}
	}
	check(gens[0], false, false)
	for i, g := range full {
		tbl.record(g, 0, i%2 == 0)
	}
	for i, g := range full {
		check(g, i%2 == 0, true)
	}
	check(gens[0]+1, false, false)
	tbl.record(gens[1], 0, false) // again: stays, and keeps the others
	check(gens[0], true, true)
	tbl.record(next, 0, true)
	check(gens[0], false, false) // the oldest, evicted
	for i, g := range full[1:] {
		check(g, i%2 == 1, true)
	}
	check(next, true, true)
	last := gens[verdictWays+1]
	tbl.record(last, gens[2], false) // gens[2]'s node's next version
	check(gens[2], false, false)
	for _, g := range append(append([]int64{gens[1]}, full[3:]...), next) {
		if _, known := tbl.lookup(g); !known {
			t.Fatalf("recording a replacing version evicted %d", g)
		}
	}
	check(last, false, true)
	tbl.record(0, 0, true)
	check(0, false, false)
	tbl.record(-4, 0, true)
	check(-4, false, false)
}

// PreFilter gets one table per policy whose require reads only the node,
// the same table for the same policy in every cycle and a new one for a
// changed policy; none at all when a require reads the pod; and the
// least recently used table goes beyond maxVerdictTables.
func TestVerdictTables(t *testing.T) {
	parse := func(name string, data map[string]string) *policies.Policy {
		t.Helper()
		p, err := policies.Parse(policyCM("ops", name, data))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	nodeOnly := parse("node-only", map[string]string{"require": `node.context == "hospital"`})
	noRequire := parse("no-require", map[string]string{"score": `node.battery`})
	readsPod := parse("reads-pod", map[string]string{"require": `node.zone == pod.labels["zone"]`})
	var v verdictTables
	got := v.forPolicies([]*policies.Policy{noRequire, nodeOnly})
	if len(got) != 2 || got[0] != nil || got[1] == nil || got[1].policy != nodeOnly {
		t.Fatalf("tables = %v, want [nil, the node-only policy's]", got)
	}
	if again := v.forPolicies([]*policies.Policy{nodeOnly}); again[0] != got[1] {
		t.Fatal("the same policy got a new table")
	}
	if v.forPolicies([]*policies.Policy{nodeOnly, readsPod}) != nil {
		t.Fatal("a policy whose require reads the pod got tables")
	}
	changed := parse("node-only", map[string]string{"require": `node.context == "store"`})
	if c := v.forPolicies([]*policies.Policy{changed}); c[0] == got[1] {
		t.Fatal("a changed policy shares the old one's table (and results)")
	}
	first := v.forPolicies([]*policies.Policy{nodeOnly})[0]
	for i := range maxVerdictTables - 1 { // nodeOnly stays among the most recent
		v.forPolicies([]*policies.Policy{parse(fmt.Sprintf("p%d", i), map[string]string{"require": `node.battery > 1`})})
	}
	if v.forPolicies([]*policies.Policy{nodeOnly})[0] != first {
		t.Fatal("a recently used table was dropped")
	}
	for i := range maxVerdictTables {
		v.forPolicies([]*policies.Policy{parse(fmt.Sprintf("q%d", i), map[string]string{"require": `node.battery > 2`})})
	}
	if len(v.tables) != maxVerdictTables {
		t.Fatalf("%d tables kept, want %d", len(v.tables), maxVerdictTables)
	}
	if v.forPolicies([]*policies.Policy{nodeOnly})[0] == first {
		t.Fatal("the least recently used table was kept beyond the bound")
	}
}

// Once a node version's verdict is recorded, Filter answers from it alone
// (the environment cache, emptied here, is not read), with the reason the
// entry gave; a new version of the node is evaluated afresh.
func TestFilterAnswersFromVerdicts(t *testing.T) {
	pl := newTestPlugin(t, policyCM("hospital-apps", "medical-assistant", exampleData()))
	pod := assistantPod("ma-0")
	ctx := context.Background()
	fits := nodeInfo(robotNode("fits", "hospital", "1,1", "1"))
	store := nodeInfo(robotNode("store", "store", "1,1", "1"))
	state, status := preFilter(t, pl, pod)
	if !status.IsSuccess() {
		t.Fatal(status)
	}
	if !pl.Filter(ctx, state, pod, fits).IsSuccess() {
		t.Fatal("the hospital robot was rejected")
	}
	reason := pl.Filter(ctx, state, pod, store).Message()
	if reason != ReasonRequireFalse("hospital-apps/medical-assistant") {
		t.Fatalf("reason %q", reason)
	}
	emptyEnvCache(pl)
	state, _ = preFilter(t, pl, pod)
	if !pl.Filter(ctx, state, pod, fits).IsSuccess() {
		t.Fatal("the hospital robot was rejected from its verdict")
	}
	if got := pl.Filter(ctx, state, pod, store); got.IsSuccess() || got.Message() != reason {
		t.Fatalf("from the verdict: %v, want the entry's reason %q", got, reason)
	}
	if n := len(pl.envs.m); n != 0 {
		t.Fatalf("Filter built %d cache entries for recorded versions", n)
	}
	store.SetNode(robotNode("store", "hospital", "1,1", "1")) // now a hospital robot
	if got := pl.Filter(ctx, state, pod, store); !got.IsSuccess() {
		t.Fatalf("the robot's new version was judged by the old verdict: %v", got)
	}
}

func emptyEnvCache(pl *Plugin) {
	pl.envs.mu.Lock()
	pl.envs.m = nil
	pl.envs.mu.Unlock()
	for i := range pl.envs.front {
		pl.envs.front[i].e.Store(nil)
		pl.envs.front[i].gen.Store(0)
	}
}
