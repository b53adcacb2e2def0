package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/roam-dev/roam/policies"
	"github.com/roam-dev/roam/scheduler/capability"
)

// runWhy implements `roamctl why POD`.
func runWhy(ctx context.Context, prog string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(prog+" why", flag.ContinueOnError)
	fs.SetOutput(stderr)
	kf := addKubeFlags(fs, true)
	var weights scoreWeights
	fs.Var(&weights, "score-weights", "roam-scheduler's RoamPolicy score weights, when not its defaults")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) != 1 {
		fmt.Fprintf(stderr, "%s why: want one pod name (POD or NAMESPACE/POD)\n%s", prog, usageFor(prog))
		return 2
	}
	cs, ns, err := kf.client()
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 1
	}
	name := pos[0]
	if n, p, ok := strings.Cut(name, "/"); ok {
		ns, name = n, p
	}
	pod, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		fmt.Fprintf(stderr, "%s: getting pod %s/%s: %v\n", prog, ns, name, err)
		return 1
	}
	s, err := loadSnapshot(ctx, cs, kf.globalNS)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 1
	}
	warnInvalid(stderr, s)
	if err := why(stdout, pod, s, weights); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 1
	}
	return 0
}

// why explains pod's placement: the policies that govern it, the chosen
// robot's requires and score components, and why the others lost or were
// rejected; for a Pending pod, which require failed where.
func why(w io.Writer, pod *corev1.Pod, s *snapshot, weights scoreWeights) error {
	in := explainInput{pod: pod, nodes: s.nodes, policies: s.policies, globalNS: s.globalNS,
		requested: map[string]map[corev1.ResourceName]int64{}, rejectUnreachable: true, weights: weights}
	for _, n := range s.nodes {
		// The pod's own requests do not count against its robot: the
		// question is whether the robot fits it.
		in.requested[n.Name] = policies.RequestedBy(s.podsOn(n.Name, pod))
	}
	e := evaluate(in)
	res, results := e.res, e.results

	fmt.Fprintf(w, "pod %s/%s: %s\n", pod.Namespace, pod.Name, podState(pod))
	if pod.Spec.SchedulerName != "roam-scheduler" {
		sched := pod.Spec.SchedulerName
		if sched == "" {
			sched = corev1.DefaultSchedulerName
		}
		fmt.Fprintf(w, "scheduler: %s, not roam-scheduler: roam's policies did not place it (set spec.schedulerName: roam-scheduler to opt in)\n", sched)
	}
	if c := scheduledCondition(pod); c != nil && c.Status != corev1.ConditionTrue && c.Message != "" {
		fmt.Fprintf(w, "scheduler says: %s\n", c.Message)
	}
	if res.Blocked != "" {
		fmt.Fprintf(w, "blocked: %s: the pod stays Pending until that policy exists and is valid\n", res.Blocked)
		return nil
	}
	if len(res.Policies) == 0 {
		fmt.Fprintln(w, "governed by no policy: roam requires nothing of its robot and adds no policy score")
	} else {
		fmt.Fprintf(w, "governed by: %s\n", governedBy(res.Policies))
	}

	feasible := 0
	for _, r := range results {
		if r.feasible {
			feasible++
		}
	}
	node := pod.Spec.NodeName
	shown := "" // the robot detailed above the others
	switch {
	case node != "":
		shown = node
		var chosen *nodeResult
		rank := 0
		for i := range results {
			if results[i].feasible {
				rank++
			}
			if results[i].name == node {
				chosen = &results[i]
				break
			}
		}
		if chosen == nil {
			fmt.Fprintf(w, "robot %s: not found (deleted?)\n", node)
			return nil
		}
		if len(res.Policies) == 0 && e.want == nil {
			fmt.Fprintf(w, "on robot %s\n", node)
			return nil
		}
		fmt.Fprintf(w, "on robot %s:\n", node)
		writeComponents(w, e, chosen)
		if chosen.feasible {
			fmt.Fprintf(w, "  rank %d of %d robots whose requires hold now\n", rank, feasible)
		} else {
			fmt.Fprintf(w, "  no longer feasible: %s (roam-detector moves the pod after its policy's settle time, unless onContextChange is keep or onNodeFailure is keep)\n", chosen.reason)
		}
	case len(res.Policies) == 0 && e.want == nil:
		return nil
	case feasible == 0:
		fmt.Fprintf(w, "no robot satisfies the pod's policies:\n")
		writeOthers(w, results, "")
		return nil
	default:
		shown = results[0].name
		fmt.Fprintf(w, "%d of %d robots satisfy the pod's policies; the best now is %s:\n", feasible, len(results), shown)
		writeComponents(w, e, &results[0])
		fmt.Fprintln(w, "  (what else keeps the pod Pending — resources, taints, affinity — is in the scheduler's message above)")
	}
	if len(results) > 1 {
		fmt.Fprintln(w, "other robots:")
		writeOthers(w, results, shown)
	}
	return nil
}

// writeOthers lists the robots but skip: the feasible ones best first with
// their totals, then the rejected ones by name with the reason.
func writeOthers(w io.Writer, results []nodeResult, skip string) {
	var ok, rejected []nodeResult
	for _, r := range results {
		switch {
		case r.name == skip:
		case r.feasible:
			ok = append(ok, r)
		default:
			rejected = append(rejected, r)
		}
	}
	sort.SliceStable(rejected, func(i, j int) bool { return rejected[i].name < rejected[j].name })
	for _, r := range ok {
		fmt.Fprintf(w, "  %s: roam score %d, policies' total %g\n", r.name, r.roam, r.total)
	}
	for _, r := range rejected {
		fmt.Fprintf(w, "  %s: %s\n", r.name, r.reason)
	}
}

// writeComponents prints each policy's require and weighted score on r,
// the built-in preference's measures, and the roam score they make.
func writeComponents(w io.Writer, e evaluation, r *nodeResult) {
	for i, p := range e.res.Policies {
		score := "no score"
		if v := r.value[i]; !math.IsNaN(v) {
			score = fmt.Sprintf("score %g × weight %g = %g", v, p.Weight, v*p.Weight)
		} else if r.score[i] == "error" {
			score = "score error"
		}
		fmt.Fprintf(w, "  %s: require %s, %s\n", p.Key(), r.require[i], score)
	}
	if len(e.res.Policies) > 0 && r.feasible {
		fmt.Fprintf(w, "  policies' total %g\n", r.total)
	}
	if e.want != nil {
		fmt.Fprintf(w, "  built-in preference (weight %d): %s\n", e.want.Weight(), builtinTerms(e.want, r.raw))
	}
	if r.feasible {
		fmt.Fprintf(w, "  roam score %d of 100 (policies weight %d, built-in weight %d, each normalized over the robots whose requires hold)\n",
			r.roam, e.policyWeight, e.want.Weight())
	}
}

// builtinTerms describes a node's measures of the pod's built-in
// preference.
func builtinTerms(want *capability.Want, raw capability.Raw) string {
	var terms []string
	if rs := want.Requests(); len(rs) > 0 {
		names := make([]string, len(rs))
		for i := range rs {
			names[i] = string(rs[i].Name)
		}
		terms = append(terms, fmt.Sprintf("%d free %s after placing the pod", raw.FreeDevices(), strings.Join(names, "+")))
	}
	if fs := want.Features(); len(fs) > 0 {
		terms = append(terms, fmt.Sprintf("%d of %d preferred features", raw.MatchedFeatures(), len(fs)))
	}
	if t := want.Target(); t.Known {
		if d, ok := raw.Distance(); ok {
			terms = append(terms, fmt.Sprintf("%.1f m from target %g,%g", d, t.X, t.Y))
		} else {
			terms = append(terms, "location unknown (counts as farthest)")
		}
	}
	return strings.Join(terms, ", ")
}

// podState is "Running on robot-a", "Pending (not scheduled)", ...
func podState(p *corev1.Pod) string {
	phase := string(p.Status.Phase)
	if phase == "" {
		phase = string(corev1.PodPending)
	}
	if p.DeletionTimestamp != nil {
		phase = "Terminating"
	}
	if p.Spec.NodeName == "" {
		return phase + " (not scheduled)"
	}
	return phase + " on " + p.Spec.NodeName
}

func scheduledCondition(p *corev1.Pod) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == corev1.PodScheduled {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}
