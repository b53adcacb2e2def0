package policy

import "math"

// The front cache and the verdict tables are set-associative caches keyed
// by NodeInfo generation: a version's set is found by hashing its
// generation, and it may sit in any of the set's ways; a set is one cache
// line. With two ways per set, the node versions of the about 200 sets
// (of 8,192) that held three or more of 5,000 nodes evicted each other on
// every visit, and stale versions were never removed from the verdict
// tables: in bench-scheduler, per 10,000 pods, 130,000 Filter calls
// missed their verdict against 16,000 new node versions, and 19 % of
// PreScore's lookups missed the first way. Now a verdict table has eight
// ways per set and the front four (each way a generation and an entry),
// recording a node's new version frees its old one's way, and a full set
// evicts its oldest version: measured, 15,810 verdict misses (the new
// versions) and 7,211 of PreScore's 5,000,000 lookups (0.14 %).

// setIndex is the index of the first of gen's ways in an array of 1<<bits
// sets of ways slots each (Fibonacci hashing spreads consecutive
// generations over the sets).
func setIndex(gen int64, bits uint, ways int) int {
	return int(uint64(gen)*0x9E3779B97F4A7C15>>(64-bits)) * ways
}

// wayFor returns the way of a set of ways slots where node version gen
// goes: the way that already holds it, else the first empty one (genAt
// 0), else the one holding the oldest version (the smallest generation).
// Versions a newer one replaced are removed from the caches, so the
// oldest left is the one least likely to be needed again soon.
func wayFor(gen int64, ways int, genAt func(way int) int64) int {
	empty, oldest := -1, 0
	oldestGen := int64(math.MaxInt64)
	for way := range ways {
		switch g := genAt(way); {
		case g == gen:
			return way
		case g == 0:
			if empty < 0 {
				empty = way
			}
		case g < oldestGen:
			oldest, oldestGen = way, g
		}
	}
	if empty >= 0 {
		return empty
	}
	return oldest
}
