package policy

import (
	"sync"
	"sync/atomic"

	"github.com/roam-dev/roam/policies"
)

// Verdicts: Filter's answer without the node's cache entry.
//
// A require that reads only the node (the design's example) has one
// result per node version for every pod, and after the first pod that
// result is all Filter needs. The environment cache keeps it in the node
// version's entry, which at fleet size is a trip to memory for every node
// of every cycle, after a first trip to the front cache's slot. A verdict
// table keeps the results alone, each in one word together with the
// version it is for (the NodeInfo generation, unique across nodes and
// versions), so Filter reads one word of a small array and touches
// nothing else. A missing or overwritten word sends Filter back to the
// entry, which then records the result again.

// A verdict table has verdictSets two-way sets: 128 KiB per policy, a
// slot for each of 16,384 node versions.
const (
	verdictBits = 13
	verdictSets = 1 << verdictBits
)

// verdictTable holds one policy's node-only require result per node
// version: a word is the generation shifted left once, with the result in
// the low bit; 0 is empty (generations start at 1). A word is written and
// read whole, so readers never see half of one, and a lost write is only a
// lost cache entry.
type verdictTable struct {
	policy *policies.Policy
	// reason is Filter's message when the require does not hold, built
	// once rather than for every rejected node of every cycle.
	reason string
	words  [verdictSets * 2]atomic.Uint64
}

// lookup returns the result recorded for node version gen.
func (t *verdictTable) lookup(gen int64) (ok, known bool) {
	if gen <= 0 {
		return false, false
	}
	set := verdictSet(gen)
	for way := set; way < set+2; way++ {
		if w := t.words[way].Load(); w>>1 == uint64(gen) {
			return w&1 == 1, true
		}
	}
	return false, false
}

// record notes ok as the result for node version gen. The newest version
// goes to its set's first way and the one there moves to the second.
func (t *verdictTable) record(gen int64, ok bool) {
	if gen <= 0 {
		return
	}
	w := uint64(gen) << 1
	if ok {
		w |= 1
	}
	set := verdictSet(gen)
	if first := t.words[set].Swap(w); first != 0 && first>>1 != uint64(gen) {
		t.words[set+1].Store(first)
	}
}

// verdictSet is the index of the first of gen's two ways.
func verdictSet(gen int64) int { return twoWaySet(gen, verdictBits) }

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
