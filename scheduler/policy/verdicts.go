package policy

import (
	"sync"
	"sync/atomic"

	"github.com/roam-dev/roam/policies"
)

// Verdicts: Filter's answer without the node's cache entry.
//
// A require that reads only the node (the example policy's) has one
// result per node version for every pod, and after the first pod that
// result is all Filter needs. The environment cache keeps it in the node
// version's entry, which at fleet size is a trip to memory for every node
// of every cycle, after a first trip to the front cache's slot. A verdict
// table keeps the results alone, each in one word together with the
// version it is for (the NodeInfo generation, unique across nodes and
// versions), so Filter reads one word of a small array and touches
// nothing else. A missing or overwritten word sends Filter back to the
// entry, which then records the result again.

// A verdict table has verdictSets eight-way sets: 128 KiB per policy, a
// slot for each of 16,384 node versions.
const (
	verdictBits = 11
	verdictSets = 1 << verdictBits
	verdictWays = 8
)

// verdictTable holds one policy's node-only require result per node
// version: a word is the generation shifted left once, with the result in
// the low bit; 0 is empty (generations start at 1). A word is written and
// read whole, so readers never see half of one, and a lost write is only a
// lost cache entry. A set is 64 bytes, one cache line (words comes first,
// and a table, one large allocation, starts on a page).
type verdictTable struct {
	words  [verdictSets * verdictWays]atomic.Uint64
	policy *policies.Policy
	// reason is Filter's message when the require does not hold, built
	// once rather than for every rejected node of every cycle.
	reason string
}

// set returns the ways of node version gen.
func (t *verdictTable) set(gen int64) []atomic.Uint64 {
	i := setIndex(gen, verdictBits, verdictWays)
	return t.words[i : i+verdictWays : i+verdictWays]
}

// lookup returns the result recorded for node version gen.
func (t *verdictTable) lookup(gen int64) (ok, known bool) {
	if gen <= 0 {
		return false, false
	}
	set := t.set(gen)
	for i := range set {
		if w := set[i].Load(); w>>1 == uint64(gen) {
			return w&1 == 1, true
		}
	}
	return false, false
}

// record notes ok as the result for node version gen, and forgets the
// result of replaced, the node's version before it (0: none), so that
// stale versions do not take the ways of current ones.
func (t *verdictTable) record(gen, replaced int64, ok bool) {
	if gen <= 0 {
		return
	}
	if replaced > 0 {
		t.forget(replaced)
	}
	w := uint64(gen) << 1
	if ok {
		w |= 1
	}
	set := t.set(gen)
	set[wayFor(gen, verdictWays, func(way int) int64 { return int64(set[way].Load() >> 1) })].Store(w)
}

// forget removes the result of node version gen.
func (t *verdictTable) forget(gen int64) {
	set := t.set(gen)
	for i := range set {
		if w := set[i].Load(); w>>1 == uint64(gen) {
			set[i].CompareAndSwap(w, 0)
		}
	}
}

// maxVerdictTables bounds the tables a plugin keeps (a policy's table
// goes when this many other policies were needed since it was last).
const maxVerdictTables = 8

// verdictTables finds each policy's table; PreFilter asks once per cycle.
// A changed policy is a new *Policy and gets a new table: results of the
// old expression are never read for the new one.
type verdictTables struct {
	mu     sync.Mutex
	tables []*verdictTable // most recently used last
}

// forPolicies returns the tables of ps, one per policy (nil for a policy
// without require, which always holds), or nil when a policy's require
// reads the pod: then Filter asks the cache entries.
func (v *verdictTables) forPolicies(ps []*policies.Policy) []*verdictTable {
	for _, p := range ps {
		if p.HasRequire() && !p.NodeOnlyRequire() {
			return nil
		}
	}
	out := make([]*verdictTable, len(ps))
	v.mu.Lock()
	defer v.mu.Unlock()
	for i, p := range ps {
		if p.HasRequire() {
			out[i] = v.tableLocked(p)
		}
	}
	return out
}

func (v *verdictTables) tableLocked(p *policies.Policy) *verdictTable {
	last := len(v.tables) - 1
	for i, t := range v.tables {
		if t.policy == p {
			if i != last { // keep the most recently used last
				copy(v.tables[i:], v.tables[i+1:])
				v.tables[last] = t
			}
			return t
		}
	}
	t := &verdictTable{policy: p, reason: ReasonRequireFalse(p.Key())}
	if len(v.tables) == maxVerdictTables {
		copy(v.tables, v.tables[1:])
		v.tables[last] = t
	} else {
		v.tables = append(v.tables, t)
	}
	return t
}
