package policy

import (
	"sync"

	v1 "k8s.io/api/core/v1"

	"github.com/roam-dev/roam/scheduler/capability"
)

// measure is what NormalizeScore needs of one node.
type measure struct {
	policy     float64        // the policies' weighted score (NaN: failed to evaluate)
	capability capability.Raw // roam's built-in preferences, raw
}

// measures are one cycle's measures of the feasible nodes, in the order
// PreScore got the nodes, which is the order of NormalizeScore's list
// (NormalizeScore checks each name and looks up any that differ).
type measures struct {
	// nodes are the measured nodes' objects, kept rather than their names
	// so that PreScore does not read the objects (NormalizeScore does,
	// after the score plugins have).
	nodes []*v1.Node
	ms    []measure
	// byName indexes nodes by name, built only when NormalizeScore meets a
	// node out of PreScore's order.
	byName map[string]int
	// PreScore's scratch space.
	gens    []int64
	entries []*envEntry
	// NormalizeScore's scratch space, kept with the measures for reuse.
	raws  []capability.Raw
	pol   []float64
	capab []int64
}

// find returns the index of node name's measure, trying i first.
func (t *measures) find(i int, name string) (int, bool) {
	if i < len(t.nodes) && t.nodes[i].Name == name {
		return i, true
	}
	if len(t.byName) == 0 {
		if t.byName == nil {
			t.byName = make(map[string]int, len(t.nodes))
		}
		for j, n := range t.nodes {
			t.byName[n.Name] = j
		}
	}
	j, ok := t.byName[name]
	return j, ok
}

// measurePool recycles measures between cycles, so a cycle allocates none.
type measurePool struct{ p sync.Pool }

func (mp *measurePool) get() *measures {
	if t, ok := mp.p.Get().(*measures); ok {
		return t
	}
	return &measures{}
}

// put empties t and keeps it for another cycle. The node objects and
// cache entries of the cycle stay referenced until the next one
// overwrites them (clearing them costs every cycle a pass with the
// garbage collector's write barriers).
func (mp *measurePool) put(t *measures) {
	clear(t.byName)
	t.nodes, t.ms = t.nodes[:0], t.ms[:0]
	mp.p.Put(t)
}
