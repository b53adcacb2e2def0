package policies

// Failure is what roam does with a pod when its robot is lost, as its
// governing policies say. roam-detector (which removes the pod) and
// roam-agent (which freezes it first) decide it with this one function, so
// they agree on which pods are fenced.
type Failure struct {
	// Move: the pod is governed and every governing policy says
	// onNodeFailure: reschedule; roam-detector removes it from a lost robot.
	Move bool
	// Force: a governing policy says forceDelete: "true".
	Force bool
	// Freeze: Move, and no governing policy says freeze: "false";
	// roam-agent freezes the pod when the robot loses the cluster.
	Freeze bool
	// AcceptDuplicates: Move, and every governing policy says
	// acceptDuplicates: "true"; the pod may be replaced in seconds even
	// when the robot is unfenced.
	AcceptDuplicates bool
	// Why explains a pod that does not move.
	Why string
}

// OnNodeFailure is the Failure for a pod governed by res.
func OnNodeFailure(res Resolution) Failure {
	if len(res.Policies) == 0 {
		return Failure{Why: "not governed by a policy"}
	}
	f := Failure{Move: true, Freeze: true, AcceptDuplicates: true}
	for _, p := range res.Policies {
		if p.OnNodeFailure == Keep {
			return Failure{Why: "policy " + p.Key() + " says onNodeFailure: keep"}
		}
		f.Force = f.Force || p.ForceDelete
		f.Freeze = f.Freeze && p.Freeze
		f.AcceptDuplicates = f.AcceptDuplicates && p.AcceptDuplicates
	}
	return f
}
