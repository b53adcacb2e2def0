// Package nodecache keeps what RoamPolicy derives from a node alone, once
// per node version: the node's expression environment and, for each policy
// asked about it, the policy's node-only parts (policies.NodeMemo). A
// scheduling cycle reads it for every node it considers, and so does the
// next cycle, so a node is evaluated again only when it changes.
//
// # Semantics
//
// A node version is the Node object (the informer delivers a new object
// for every update) together with the units of the node's extended
// resources that the pods on it request (its free devices). Everything in
// an Entry is a function of the version and of the policies it memoizes:
// an Entry returned for a NodeInfo is exactly what a fresh evaluation of
// that NodeInfo would give, whichever NodeInfo asks.
//
// The cache holds at most one entry per node name, found by the node's
// Node object. Get returns the stored entry when its version is the asking
// NodeInfo's, else builds one. Only a
// NodeInfo that Options.Authoritative accepts (the scheduler snapshot's own)
// replaces the stored entry: the copies preemption and nominated pods make
// (with pods removed or added, and new generations) get a correct entry of
// their own without evicting the real node's, and a copy whose devices are
// unchanged finds the real node's entry. A NodeInfo generation is used only
// as a shortcut: an entry built from a NodeInfo with the same non-zero
// generation (generations are unique per NodeInfo state, and copies keep an
// unchanged one) is known to match without comparing requests.
package nodecache

import (
	"maps"
	"slices"
	"sync"
	"unique"

	v1 "k8s.io/api/core/v1"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/roam-dev/roam/policies"
	"github.com/roam-dev/roam/scheduler/capability"
)

// MaxMemos bounds the policies memoized per entry; a pod governed by more
// evaluates the others in full.
const MaxMemos = 8

// Cache is the node-version cache. It is safe for concurrent use.
type Cache interface {
	// Get returns the entry of ni's node version with the memos of ps (the
	// first MaxMemos of them).
	Get(ni fwk.NodeInfo, ps []*policies.Policy) *Entry
	// Forget drops the entry of the named node (it was deleted).
	Forget(nodeName string)
}

// Options configure a Cache.
type Options struct {
	// Authoritative reports whether ni is the scheduler's own view of its
	// node, whose entry the cache keeps. Nil accepts every NodeInfo.
	Authoritative func(ni fwk.NodeInfo) bool
	// Memoized, when set, is called for every memo the cache builds (to
	// count evaluations).
	Memoized func(p *policies.Policy, m *policies.NodeMemo)
}

// New returns an empty cache.
func New(o Options) Cache {
	return &cache{opts: o, byNode: map[*v1.Node]*Entry{}, byName: map[string]*Entry{}}
}

type cache struct {
	opts Options
	mu   sync.RWMutex
	// The entry of each node, by its current Node object (a lookup
	// hashes a pointer) and by its name (to replace and forget it).
	byNode map[*v1.Node]*Entry
	byName map[string]*Entry
}

// Entry is what one node version yields. It is immutable.
type Entry struct {
	node    *v1.Node
	gen     int64 // generation of the NodeInfo it was built from (0: unknown)
	env     policies.NodeEnv
	devices []device // the node's extended resources, by name
	memos   []policies.NodeMemo
}

// device is one extended resource of the node: what pods request of it is
// part of the version; its name interned so comparing names compares
// pointers.
type device struct {
	name      v1.ResourceName
	handle    unique.Handle[string]
	requested int64
	free      int64
}

// Env is the node's expression environment.
func (e *Entry) Env() *policies.NodeEnv { return &e.env }

// Node is the Node object of the version.
func (e *Entry) Node() *v1.Node { return e.node }

// Labels are the node's labels.
func (e *Entry) Labels() map[string]string { return e.env.Labels }

// Location is the node's roam.dev/location.
func (e *Entry) Location() policies.Point { return e.env.Location }

// FreeUnits implements capability.FreeUnits: the node's free units of r
// (before placing the pod).
func (e *Entry) FreeUnits(r *capability.Request) int64 {
	for i := range e.devices {
		if e.devices[i].handle == r.Handle {
			return e.devices[i].free
		}
	}
	return 0
}

// Memo returns p's memo on this version, or nil when p is not memoized
// (then evaluate it in full: RequireWith and ScoreWith accept nil).
func (e *Entry) Memo(p *policies.Policy) *policies.NodeMemo {
	for i := range e.memos {
		if e.memos[i].Policy() == p {
			return &e.memos[i]
		}
	}
	return nil
}

// matches reports whether ni (holding node at generation gen) describes
// the version e was built from.
func (e *Entry) matches(node *v1.Node, gen int64, ni fwk.NodeInfo) bool {
	if e.node != node {
		return false
	}
	if gen != 0 && gen == e.gen {
		return true
	}
	requested := requestedOf(ni)
	for i := range e.devices {
		if requested[e.devices[i].name] != e.devices[i].requested {
			return false
		}
	}
	return true
}

// memoizes reports whether e holds a memo of every policy of ps it can.
func (e *Entry) memoizes(ps []*policies.Policy) bool {
	for i, p := range ps {
		if i == MaxMemos {
			break
		}
		if e.Memo(p) == nil {
			return false
		}
	}
	return true
}

func requestedOf(ni fwk.NodeInfo) map[v1.ResourceName]int64 {
	if r := ni.GetRequested(); r != nil {
		return r.GetScalarResources()
	}
	return nil
}

func (c *cache) Get(ni fwk.NodeInfo, ps []*policies.Policy) *Entry {
	node, gen := ni.Node(), ni.GetGeneration()
	c.mu.RLock()
	e := c.byNode[node]
	c.mu.RUnlock()
	switch {
	case e == nil || !e.matches(node, gen, ni):
		return c.keep(ni, c.build(ni, ps))
	case !e.memoizes(ps):
		return c.keep(ni, c.withMemos(policies.NewEvaluator(), e, gen, ps))
	case gen != e.gen && c.authoritative(ni):
		// The same version under a new generation (say a pod without
		// devices was placed): note the generation so the next lookup
		// need not compare requests.
		next := *e
		next.gen = gen
		c.store(&next)
	}
	return e
}

func (c *cache) authoritative(ni fwk.NodeInfo) bool {
	return c.opts.Authoritative == nil || c.opts.Authoritative(ni)
}

// keep stores e as its node's entry when ni is authoritative.
func (c *cache) keep(ni fwk.NodeInfo, e *Entry) *Entry {
	if c.authoritative(ni) {
		c.store(e)
	}
	return e
}

func (c *cache) store(e *Entry) {
	c.mu.Lock()
	if old := c.byName[e.node.Name]; old != nil && old.node != e.node {
		delete(c.byNode, old.node)
	}
	c.byName[e.node.Name], c.byNode[e.node] = e, e
	c.mu.Unlock()
}

func (c *cache) Forget(nodeName string) {
	c.mu.Lock()
	if old := c.byName[nodeName]; old != nil {
		delete(c.byNode, old.node)
		delete(c.byName, nodeName)
	}
	c.mu.Unlock()
}

// build evaluates ni's version afresh.
func (c *cache) build(ni fwk.NodeInfo, ps []*policies.Policy) *Entry {
	node, requested := ni.Node(), requestedOf(ni)
	e := &Entry{node: node, gen: ni.GetGeneration(), env: policies.NodeEnvFor(node, requested)}
	for _, name := range slices.Sorted(maps.Keys(e.env.Devices)) {
		rn := v1.ResourceName(name)
		e.devices = append(e.devices, device{name: rn, handle: unique.Make(name),
			requested: requested[rn], free: int64(e.env.Devices[name])})
	}
	return c.withMemos(policies.NewEvaluator(), e, e.gen, ps)
}

// withMemos returns a copy of e (under generation gen) that also memoizes
// ps, keeping e's other memos up to MaxMemos; ev is scratch space (an
// entry is built once per node version, so a fresh one costs little).
func (c *cache) withMemos(ev *policies.Evaluator, e *Entry, gen int64, ps []*policies.Policy) *Entry {
	next := *e
	next.gen = gen
	next.memos = make([]policies.NodeMemo, 0, min(MaxMemos, len(ps)+len(e.memos)))
	for _, p := range ps {
		if len(next.memos) == MaxMemos {
			break
		}
		if next.Memo(p) != nil {
			continue
		}
		if old := e.Memo(p); old != nil {
			next.memos = append(next.memos, *old)
			continue
		}
		m := p.Memoize(ev, &next.env)
		if c.opts.Memoized != nil {
			c.opts.Memoized(p, &m)
		}
		next.memos = append(next.memos, m)
	}
	for _, m := range e.memos {
		if len(next.memos) < MaxMemos && next.Memo(m.Policy()) == nil {
			next.memos = append(next.memos, m)
		}
	}
	return &next
}
