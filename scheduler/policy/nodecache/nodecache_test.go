package nodecache

import (
	"fmt"
	"testing"
	"unique"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	st "k8s.io/kubernetes/pkg/scheduler/testing"

	"github.com/roam-dev/roam/policies"
	"github.com/roam-dev/roam/scheduler/capability"
)

func parse(t *testing.T, name, require string) *policies.Policy {
	t.Helper()
	p, err := policies.Parse(&v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ops", Name: name, Labels: map[string]string{policies.PolicyLabel: "true"}},
		Data: map[string]string{"require": require, "score": `10 * node.devices["roam.dev/camera"]`}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func robot(name, context string, cameras int) *v1.Node {
	return st.MakeNode().Name(name).Label(policies.ContextLabel, context).
		Annotation(policies.LocationAnnotation, "3,4").
		Capacity(map[v1.ResourceName]string{v1.ResourceCPU: "4", v1.ResourcePods: "110", "roam.dev/camera": fmt.Sprint(cameras)}).Obj()
}

func cameraPod(name string, cameras int) *v1.Pod {
	return st.MakePod().Namespace("apps").Name(name).UID(name).Node("r").
		Req(map[v1.ResourceName]string{"roam.dev/camera": fmt.Sprint(cameras)}).Obj()
}

func nodeInfo(node *v1.Node, pods ...*v1.Pod) *framework.NodeInfo {
	ni := framework.NewNodeInfo(pods...)
	ni.SetNode(node)
	return ni
}

// memoCounter counts the memos a cache builds: each is an evaluation.
type memoCounter struct{ n int }

func (c *memoCounter) count(*policies.Policy, *policies.NodeMemo) { c.n++ }

// An entry is the node version's environment: free devices are
// allocatable minus what the node's pods request, and they are what
// FreeUnits reports.
func TestEntryOfVersion(t *testing.T) {
	c := New(Options{})
	n := robot("r", "hospital", 5)
	n.Status.Allocatable["roam.dev/arm"] = n.Status.Allocatable["roam.dev/camera"] // 5 arms
	holder := st.MakePod().Namespace("apps").Name("holder").Node("r").
		Req(map[v1.ResourceName]string{"roam.dev/camera": "2", "roam.dev/arm": "1"}).Obj()
	e := c.Get(nodeInfo(n, holder), nil)
	if e.Env().Name != "r" || e.Location() != (policies.Point{X: 3, Y: 4, Known: true}) || e.Labels()[policies.ContextLabel] != "hospital" || e.Node() != n {
		t.Fatalf("entry: env %+v", e.Env())
	}
	for name, want := range map[string]int64{"roam.dev/camera": 3, "roam.dev/arm": 4, "roam.dev/lidar": 0} {
		if got := e.FreeUnits(&capability.Request{Name: v1.ResourceName(name), Handle: unique.Make(name)}); got != want || int64(e.Env().Devices[name]) != want {
			t.Errorf("free %s = %v (env %v), want %v", name, got, e.Env().Devices[name], want)
		}
	}
}

// A node is evaluated again exactly when its version changes: a new Node
// object, or a change in what its pods request of its devices; a pod
// without devices, or a new NodeInfo generation alone, is the same version.
func TestVersions(t *testing.T) {
	var memos memoCounter
	c := New(Options{Memoized: memos.count})
	hospital := parse(t, "hospital", `node.context == "hospital" && node.devices["roam.dev/camera"] >= 1`)
	ps := []*policies.Policy{hospital}
	ni := nodeInfo(robot("r", "hospital", 1))
	check := func(what string, wantOK bool, wantMemos int) *Entry {
		t.Helper()
		e := c.Get(ni, ps)
		ok, known := hospital.MemoRequire(e.Memo(hospital))
		if !known || ok != wantOK || memos.n != wantMemos {
			t.Fatalf("%s: require %v (known %v) after %d evaluations; want %v after %d", what, ok, known, memos.n, wantOK, wantMemos)
		}
		return e
	}
	first := check("first", true, 1)
	if check("again", true, 1) != first {
		t.Fatal("the same version got a new entry")
	}
	ni.AddPod(st.MakePod().Namespace("apps").Name("plain").UID("plain").Node("r").Obj())
	check("a pod without devices", true, 1)
	ni.SetNode(ni.Node()) // a new generation, the same object
	check("the same object again", true, 1)
	holder := cameraPod("holder", 1)
	ni.AddPod(holder)
	check("its camera taken", false, 2)
	if err := ni.RemovePod(klogger(t), holder); err != nil {
		t.Fatal(err)
	}
	check("its camera free again", true, 3)
	ni.SetNode(robot("r", "store", 1))
	check("moved to a store", false, 4)
	c.Forget("r")
	check("forgotten", false, 5)
}

// The cache keeps one entry per node: a node's new Node object replaces
// the old object's entry, and Forget drops it.
func TestOneEntryPerNode(t *testing.T) {
	c := New(Options{}).(*cache)
	ni := nodeInfo(robot("r", "hospital", 1))
	sizes := func() (int, int) { return len(c.byNode), len(c.byName) }
	c.Get(ni, nil)
	for _, context := range []string{"store", "hospital"} {
		ni.SetNode(robot("r", context, 1))
		if e := c.Get(ni, nil); e.Node() != ni.Node() {
			t.Fatal("the entry is not the new Node object's")
		}
		if n, m := sizes(); n != 1 || m != 1 {
			t.Fatalf("%d entries by object, %d by name after a node update; want 1, 1", n, m)
		}
	}
	c.Forget("r")
	if n, m := sizes(); n != 0 || m != 0 {
		t.Fatalf("%d entries by object, %d by name after Forget; want none", n, m)
	}
}

// Preemption and nominated pods evaluate copies of a NodeInfo with pods
// removed or added, and new generations. A copy never replaces the real
// node's entry (which stays, and is not evaluated again), it gets its own
// correct answer, and a copy of the same version finds the real entry.
func TestCopiesDoNotCorruptTheCache(t *testing.T) {
	var memos memoCounter
	holder := cameraPod("holder", 1)
	real := nodeInfo(robot("r", "hospital", 1), holder)
	c := New(Options{Memoized: memos.count, Authoritative: func(ni fwk.NodeInfo) bool { return ni == fwk.NodeInfo(real) }})
	hospital := parse(t, "hospital", `node.context == "hospital" && node.devices["roam.dev/camera"] >= 1`)
	ps := []*policies.Policy{hospital}
	passes := func(e *Entry) bool {
		ok, known := hospital.MemoRequire(e.Memo(hospital))
		if !known {
			t.Fatal("a node-only require is not memoized")
		}
		return ok
	}
	entry := c.Get(real, ps)
	if passes(entry) || memos.n != 1 {
		t.Fatalf("the real node (camera taken) passes=%v after %d evaluations", passes(entry), memos.n)
	}

	// Preemption's dry run: the victim removed from a copy.
	victimless := real.SnapshotConcrete()
	if err := victimless.RemovePod(klogger(t), holder); err != nil {
		t.Fatal(err)
	}
	if victimless.GetGeneration() == real.GetGeneration() {
		t.Fatal("the copy kept the generation")
	}
	for range 2 {
		if e := c.Get(victimless, ps); !passes(e) || e == entry {
			t.Fatal("the copy without the victim does not pass")
		}
	}
	// A nominated pod without devices added to a copy: the same version.
	nominated := real.SnapshotConcrete()
	nominated.AddPod(st.MakePod().Namespace("apps").Name("nominated").UID("nominated").Node("r").Obj())
	if e := c.Get(nominated, ps); e != entry {
		t.Fatal("a copy of the same version did not find the real node's entry")
	}
	if e := c.Get(real, ps); e != entry || passes(e) {
		t.Fatalf("the real node's entry was replaced or changed by a copy (passes=%v)", passes(e))
	}
	if memos.n != 3 {
		t.Fatalf("%d evaluations, want 3: the real node once, each lookup of the victimless copy once", memos.n)
	}
}

// An entry memoizes the first MaxMemos policies asked about it, and keeps
// the policies earlier pods asked about as far as room remains.
func TestMemosPerEntry(t *testing.T) {
	c := New(Options{})
	ni := nodeInfo(robot("r", "hospital", 1))
	var ps []*policies.Policy
	for i := range MaxMemos + 2 {
		ps = append(ps, parse(t, fmt.Sprintf("p%d", i), `node.context == "hospital"`))
	}
	e := c.Get(ni, ps[:1])
	if e.Memo(ps[0]) == nil || e.Memo(ps[1]) != nil {
		t.Fatal("the entry does not memoize exactly the policy asked about")
	}
	e = c.Get(ni, ps[1:])
	for i, p := range ps {
		if got, want := e.Memo(p) != nil, i >= 1 && i <= MaxMemos; got != want {
			t.Fatalf("policy %d memoized %v, want %v", i, got, want)
		}
	}
	if c.Get(ni, ps[1:3]) != e {
		t.Fatal("asking about memoized policies built a new entry")
	}
}

func klogger(t *testing.T) klog.Logger {
	logger, _ := ktesting.NewTestContext(t)
	return logger
}
