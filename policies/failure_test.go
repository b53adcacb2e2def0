package policies

import "testing"

func TestOnNodeFailure(t *testing.T) {
	move := &Policy{Namespace: "a", Name: "move", OnNodeFailure: Reschedule, Freeze: true}
	keep := &Policy{Namespace: "a", Name: "keep", OnNodeFailure: Keep, Freeze: true}
	noFreeze := &Policy{Namespace: "a", Name: "nofreeze", OnNodeFailure: Reschedule}
	dup := &Policy{Namespace: "a", Name: "dup", OnNodeFailure: Reschedule, Freeze: true, AcceptDuplicates: true, ForceDelete: true}
	for _, tc := range []struct {
		name string
		ps   []*Policy
		want Failure
	}{
		{"ungoverned", nil, Failure{Why: "not governed by a policy"}},
		{"reschedule", []*Policy{move}, Failure{Move: true, Freeze: true}},
		{"one keep wins", []*Policy{move, keep}, Failure{Why: "policy a/keep says onNodeFailure: keep"}},
		{"one freeze false wins", []*Policy{move, noFreeze}, Failure{Move: true}},
		{"duplicates need every policy", []*Policy{dup, move}, Failure{Move: true, Force: true, Freeze: true}},
		{"duplicates accepted", []*Policy{dup}, Failure{Move: true, Force: true, Freeze: true, AcceptDuplicates: true}},
	} {
		if got := OnNodeFailure(Resolution{Policies: tc.ps}); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
