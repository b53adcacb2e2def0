package policy

import (
	"sync"
	"sync/atomic"

	"github.com/roam-dev/roam/scheduler/capability"
)

// measure is what NormalizeScore needs of one node.
type measure struct {
	policy     float64        // the policies' weighted score (NaN: failed to evaluate)
	capability capability.Raw // roam's built-in preferences, raw
}

// scoreTable holds one cycle's measures: Filter fills it for the nodes
// that pass (in parallel), Score returns each node's index in it, and
// NormalizeScore reads the measures by index. Keyed by NodeInfo
// generation (unique per node version): Score then reads one small table
// that is likely still in the CPU cache, not the node's cache entry.
//
// An open-addressing table of tableSize slots holds the first ~half of
// that many nodes; beyond (a large cluster scoring most of its nodes),
// Score measures again and appends to overflow. Slots are claimed with a
// compare-and-swap on the key; a measure is written only by the goroutine
// that claimed its slot, and read after the framework's wait for all
// Filters (or all Scores), so measures need no atomics.
type scoreTable struct {
	// slots hold a key (the NodeInfo generation; 0: free) next to its
	// measure, so a put or find touches one cache line, not two.
	slots    [tableSize]tableSlot
	mu       sync.Mutex
	overflow []measure // Score's measures that found no slot; index -1-i
	// NormalizeScore's scratch space, kept with the table for reuse.
	raws  []capability.Raw
	pol   []float64
	capab []int64
}

type tableSlot struct {
	key atomic.Int64
	m   measure
}

const (
	tableSize = 1 << 11
	maxProbe  = 16
)

// slot is where gen's probe sequence starts (Fibonacci hashing:
// generations of neighbouring nodes are close numbers).
func slot(gen int64) int {
	return int(uint64(gen) * 0x9E3779B97F4A7C15 >> (64 - 11))
}

// put records gen's measure and returns its index. Without a free slot
// near gen's, it appends to overflow when spill is set (Score must return
// an index) and returns -1 otherwise (Filter: Score will measure again).
func (t *scoreTable) put(gen int64, m measure, spill bool) int64 {
	if gen != 0 {
		for i, j := 0, slot(gen); i < maxProbe; i, j = i+1, (j+1)&(tableSize-1) {
			k := t.slots[j].key.Load()
			if k == gen || (k == 0 && t.slots[j].key.CompareAndSwap(0, gen)) {
				t.slots[j].m = m
				return int64(j)
			}
		}
	}
	if !spill {
		return -1
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.overflow = append(t.overflow, m)
	return int64(-len(t.overflow))
}

// find returns the index of gen's measure.
func (t *scoreTable) find(gen int64) (int64, bool) {
	if gen == 0 {
		return 0, false
	}
	for i, j := 0, slot(gen); i < maxProbe; i, j = i+1, (j+1)&(tableSize-1) {
		switch t.slots[j].key.Load() {
		case gen:
			return int64(j), true
		case 0:
			return 0, false
		}
	}
	return 0, false
}

// at returns the measure at index i (from put or find).
func (t *scoreTable) at(i int64) (measure, bool) {
	switch {
	case i >= 0 && i < tableSize && t.slots[i].key.Load() != 0:
		return t.slots[i].m, true
	case i < 0 && int(-i) <= len(t.overflow):
		return t.overflow[-i-1], true
	}
	return measure{}, false
}

// tablePool recycles score tables between cycles: a table is 48 KiB, and
// a fresh one per pod would keep the garbage collector busy.
type tablePool struct{ p sync.Pool }

func (tp *tablePool) get() *scoreTable {
	if t, ok := tp.p.Get().(*scoreTable); ok {
		return t
	}
	return &scoreTable{}
}

// put clears t and keeps it for another cycle.
func (tp *tablePool) put(t *scoreTable) {
	clear(t.slots[:])
	t.overflow = t.overflow[:0]
	tp.p.Put(t)
}
