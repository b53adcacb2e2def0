package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/roam-dev/roam/policies"
	"github.com/roam-dev/roam/scheduler/capability"
)

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// explainInput is what explain evaluates.
type explainInput struct {
	pod       *corev1.Pod
	nodes     []*corev1.Node
	requested map[string]map[corev1.ResourceName]int64 // by node name
	policies  []*policies.Policy
	globalNS  string
	// rejectUnreachable rejects robots tainted roam.dev/unreachable for
	// governed pods, as roam-scheduler's Filter does.
	rejectUnreachable bool
	// weights are roam-scheduler's score weights (zero value: its defaults).
	weights scoreWeights
}

// runExplain implements `roamctl policy explain`.
func runExplain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("roamctl policy explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	podArg := fs.String("pod", "", "pod YAML file, or namespace/name of a live pod with --kubeconfig")
	nodesArg := fs.String("nodes", "", "YAML file of Nodes (multi-document or a List); default with --kubeconfig: the cluster's nodes")
	var policyArgs stringList
	fs.Var(&policyArgs, "policies", "policy ConfigMap YAML file or directory (repeatable); default with --kubeconfig: the cluster's policies")
	kubeconfig := fs.String("kubeconfig", "", "read the pod, nodes and policies from this cluster")
	globalNS := fs.String("global-namespace", policies.DefaultGlobalNamespace, "namespace whose policies govern every namespace")
	var weights scoreWeights
	fs.Var(&weights, "score-weights", "roam-scheduler's RoamPolicy score weights, when not its defaults")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *podArg == "" || (*nodesArg == "" && *kubeconfig == "") {
		fmt.Fprint(stderr, "roamctl policy explain: --pod and --nodes (or --kubeconfig) are required\n"+usage)
		return 2
	}
	in := explainInput{globalNS: *globalNS, weights: weights}
	var cs kubernetes.Interface
	if *kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
		if err != nil {
			fmt.Fprintf(stderr, "roamctl: %v\n", err)
			return 1
		}
		if cs, err = kubernetes.NewForConfig(cfg); err != nil {
			fmt.Fprintf(stderr, "roamctl: %v\n", err)
			return 1
		}
	}
	if err := loadExplainInput(ctx, cs, *podArg, *nodesArg, policyArgs, &in, stderr); err != nil {
		fmt.Fprintf(stderr, "roamctl: %v\n", err)
		return 1
	}
	if err := explain(stdout, in); err != nil {
		fmt.Fprintf(stderr, "roamctl: %v\n", err)
		return 1
	}
	return 0
}

func loadExplainInput(ctx context.Context, cs kubernetes.Interface, podArg, nodesArg string, policyArgs []string, in *explainInput, stderr io.Writer) error {
	// pod
	if _, err := os.Stat(podArg); err == nil || cs == nil {
		docs, err := readDocuments(podArg)
		if err != nil {
			return fmt.Errorf("%s: %w", podArg, err)
		}
		for _, d := range docs {
			if d.kind == "Pod" {
				var p corev1.Pod
				if err := decode(d.root, &p); err != nil {
					return fmt.Errorf("%s: %w", podArg, err)
				}
				in.pod = &p
				break
			}
		}
		if in.pod == nil {
			return fmt.Errorf("%s: no Pod found", podArg)
		}
	} else {
		ns, name, ok := strings.Cut(podArg, "/")
		if !ok {
			ns, name = metav1.NamespaceDefault, podArg
		}
		p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("getting pod %s/%s: %w", ns, name, err)
		}
		in.pod = p
	}
	if in.pod.Namespace == "" {
		in.pod.Namespace = metav1.NamespaceDefault
	}

	// nodes
	if nodesArg != "" {
		docs, err := readDocuments(nodesArg)
		if err != nil {
			return fmt.Errorf("%s: %w", nodesArg, err)
		}
		for _, d := range docs {
			switch d.kind {
			case "Node":
				var n corev1.Node
				if err := decode(d.root, &n); err != nil {
					return fmt.Errorf("%s: %w", nodesArg, err)
				}
				in.nodes = append(in.nodes, &n)
			case "NodeList", "List":
				var l corev1.NodeList
				if err := decode(d.root, &l); err != nil {
					return fmt.Errorf("%s: %w", nodesArg, err)
				}
				for i := range l.Items {
					in.nodes = append(in.nodes, &l.Items[i])
				}
			}
		}
		if len(in.nodes) == 0 {
			return fmt.Errorf("%s: no Nodes found", nodesArg)
		}
	} else {
		list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("listing nodes: %w", err)
		}
		for i := range list.Items {
			in.nodes = append(in.nodes, &list.Items[i])
		}
		// Devices in use: the requests of the pods bound to each node.
		in.requested = map[string]map[corev1.ResourceName]int64{}
		for _, n := range in.nodes {
			pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.nodeName", n.Name).String()})
			if err != nil {
				return fmt.Errorf("listing pods on %s: %w", n.Name, err)
			}
			ptrs := make([]*corev1.Pod, 0, len(pods.Items))
			for i := range pods.Items {
				if pods.Items[i].UID != in.pod.UID || in.pod.UID == "" {
					ptrs = append(ptrs, &pods.Items[i])
				}
			}
			in.requested[n.Name] = policies.RequestedBy(ptrs)
		}
	}

	// policies
	if len(policyArgs) > 0 {
		var files []string
		for _, a := range policyArgs {
			fi, err := os.Stat(a)
			if err != nil {
				return err
			}
			if !fi.IsDir() {
				files = append(files, a)
				continue
			}
			for _, pat := range []string{"*.yaml", "*.yml"} {
				m, _ := filepath.Glob(filepath.Join(a, pat))
				files = append(files, m...)
			}
		}
		sort.Strings(files)
		ps, diags, err := loadPolicies(files)
		if err != nil {
			return err
		}
		for _, d := range diags {
			fmt.Fprintf(stderr, "warning: invalid policy ignored: %s\n", d)
		}
		in.policies = ps
	} else if cs != nil {
		for _, ns := range []string{in.pod.Namespace, in.globalNS} {
			list, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{LabelSelector: policies.PolicyLabel + "=true"})
			if err != nil {
				return fmt.Errorf("listing policies in %s: %w", ns, err)
			}
			for i := range list.Items {
				p, err := policies.Parse(&list.Items[i])
				if err != nil {
					fmt.Fprintf(stderr, "warning: invalid policy ignored: %v\n", err)
					continue
				}
				in.policies = append(in.policies, p)
			}
			if ns == in.globalNS {
				break
			}
		}
	}
	return nil
}

// nodeResult is the evaluation of one node.
type nodeResult struct {
	name     string
	require  []string  // per policy: true, false or an error
	score    []string  // per policy: the score, "-" (none) or "error"
	value    []float64 // per policy: the score (NaN when none or an error)
	feasible bool
	total    float64
	reason   string
	// roam is RoamPolicy's 0..100 score of a feasible node (the policies'
	// total and the built-in preference, normalized over the feasible
	// nodes as the scheduler does); raw is its built-in measure.
	roam int64
	raw  capability.Raw
}

// evaluation is evaluate's answer.
type evaluation struct {
	res     policies.Resolution
	results []nodeResult
	// want is the pod's built-in preference (nil: none applies).
	want *capability.Want
	// policyWeight is the policies' weight in the roam score (0: no policy
	// scores the pod).
	policyWeight int64
}

// evaluate resolves the pod's policies and evaluates every node against
// them with the policy code the scheduler runs; feasible nodes come first,
// best total first.
func evaluate(in explainInput) evaluation {
	ev := policies.NewEvaluator()
	res := policies.Resolve(ev, in.pod, in.policies, in.globalNS)
	if res.Blocked != "" {
		return evaluation{res: res}
	}
	w := in.weights.orDefault()
	e := evaluation{res: res, want: capability.WantOf(in.pod, w.builtin(), len(res.Policies) > 0)}
	for _, p := range res.Policies {
		if p.HasScore {
			e.policyWeight = w.Policy
		}
	}
	podEnv := policies.PodEnvFor(in.pod)
	var results []nodeResult
	var feasible []float64 // the policies' totals of the feasible nodes (NaN: a score failed)
	var raws []capability.Raw
	for _, n := range in.nodes {
		env := policies.Env{Node: policies.NodeEnvFor(n, in.requested[n.Name]), Pod: podEnv}
		r := nodeResult{name: n.Name, feasible: true}
		failed := false
		if in.rejectUnreachable && len(res.Policies) > 0 && tainted(n, policies.UnreachableTaint) {
			r.feasible = false
			r.reason = "taint " + policies.UnreachableTaint + ": roam-detector suspects it"
		}
		for _, p := range res.Policies {
			ok, err := p.Require(ev, &env)
			switch {
			case err != nil:
				r.require = append(r.require, "error")
				r.feasible = false
				if r.reason == "" {
					r.reason = firstLine(err.Error())
				}
			case !ok:
				r.require = append(r.require, "false")
				r.feasible = false
				if r.reason == "" {
					r.reason = "require of " + p.Key() + " is false"
				}
			default:
				r.require = append(r.require, "true")
			}
			if !p.HasScore {
				r.score = append(r.score, "-")
				r.value = append(r.value, math.NaN())
				continue
			}
			s, err := p.Score(ev, &env)
			if err != nil || math.IsNaN(s) {
				r.score = append(r.score, "error")
				r.value = append(r.value, math.NaN())
				if r.reason == "" && err != nil {
					r.reason = firstLine(err.Error())
				}
				failed = true
				continue
			}
			r.score = append(r.score, fmt.Sprintf("%g", s))
			r.value = append(r.value, s)
			r.total += p.Weight * s
		}
		if r.feasible {
			total := r.total
			if failed {
				total = math.NaN()
			}
			feasible = append(feasible, total)
			if e.want != nil {
				node := env.Node
				r.raw = e.want.Measure(node.Location, func() map[string]string { return node.Labels }, freeDevices(node.Devices))
			}
			raws = append(raws, r.raw)
		}
		results = append(results, r)
	}
	scores := make([]int64, len(feasible))
	capability.Combine(e.policyWeight, feasible, e.want, raws, scores)
	k := 0
	for i := range results {
		if results[i].feasible {
			results[i].roam = scores[k]
			k++
		}
	}
	sort.SliceStable(results, func(i, j int) bool {
		a, b := results[i], results[j]
		if a.feasible != b.feasible {
			return a.feasible
		}
		if a.roam != b.roam {
			return a.roam > b.roam
		}
		if a.total != b.total {
			return a.total > b.total
		}
		return a.name < b.name
	})
	e.results = results
	return e
}

// freeDevices reads a node's free extended-resource units (allocatable
// minus the requests of its pods) for capability.Want.Measure.
type freeDevices map[string]float64

func (f freeDevices) FreeUnits(r *capability.Request) int64 { return int64(f[string(r.Name)]) }

// explain prints, per node, each require and score and the rank.
func explain(w io.Writer, in explainInput) error {
	e := evaluate(in)
	res, results := e.res, e.results
	fmt.Fprintf(w, "pod %s/%s\n", in.pod.Namespace, in.pod.Name)
	if res.Blocked != "" {
		fmt.Fprintf(w, "blocked: %s (the pod stays Pending)\n", res.Blocked)
		return nil
	}
	if len(res.Policies) == 0 {
		fmt.Fprintln(w, "governed by no policy: every node is feasible, roam adds no score")
	} else {
		fmt.Fprintf(w, "governed by: %s\n", governedBy(res.Policies))
	}

	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	header := []string{"RANK", "NODE"}
	for _, p := range res.Policies {
		header = append(header, "REQUIRE "+p.Name, "SCORE "+p.Name)
	}
	header = append(header, "TOTAL", "ROAM", "NOTE")
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	rank := 0
	for _, r := range results {
		rk := "-"
		if r.feasible {
			rank++
			rk = fmt.Sprint(rank)
		}
		row := []string{rk, r.name}
		for i := range r.require {
			row = append(row, r.require[i], r.score[i])
		}
		total, score := "-", "-"
		if r.feasible {
			total, score = fmt.Sprintf("%g", r.total), fmt.Sprint(r.roam)
		}
		row = append(row, total, score, r.reason)
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if rank == 0 {
		return errors.New("no node satisfies the pod's policies")
	}
	return nil
}

func tainted(n *corev1.Node, key string) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == key {
			return true
		}
	}
	return false
}

// governedBy lists policies with their weights.
func governedBy(ps []*policies.Policy) string {
	var names []string
	for _, p := range ps {
		names = append(names, fmt.Sprintf("%s (weight %g)", p.Key(), p.Weight))
	}
	return strings.Join(names, ", ")
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
