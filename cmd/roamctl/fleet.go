package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/roam-dev/roam/policies"
)

// Names roam-detector writes on a Node (package detector).
const (
	conditionReachable  corev1.NodeConditionType = "RoamReachable"
	reasonEvictionBrake                          = "RoamEvictionBrake"
)

// Reachability of a robot, from its RoamReachable condition and taint.
const (
	reachableYes       = "yes"       // condition True
	reachableSuspected = "suspected" // condition False, or the unreachable taint
	reachableBraked    = "braked"    // suspected, evictions held by the partition brake
	reachableUnknown   = "unknown"   // condition Unknown for another reason
	reachableNone      = "-"         // no condition: roam-detector does not watch it (yet)
)

// Robot is one row of `roamctl fleet`.
type Robot struct {
	Name     string `json:"name"`
	Context  string `json:"context,omitempty"`
	Zone     string `json:"zone,omitempty"`
	Location string `json:"location,omitempty"`
	// Battery is the roam.dev/battery annotation, nil when unknown.
	Battery   *float64 `json:"battery,omitempty"`
	Reachable string   `json:"reachable"`
	// Phi is read from the RoamReachable condition's message.
	Phi *float64 `json:"phi,omitempty"`
	// ReachableMessage is the RoamReachable condition's message.
	ReachableMessage string   `json:"reachableMessage,omitempty"`
	Ready            string   `json:"ready"`
	Devices          []Device `json:"devices,omitempty"`
	Pods             int      `json:"pods"`
	GovernedPods     int      `json:"governedPods"`
	Taints           []string `json:"taints,omitempty"`
}

// Device is one extended resource of a robot: free = allocatable minus the
// requests of the pods bound to it.
type Device struct {
	Name  string  `json:"name"`
	Free  float64 `json:"free"`
	Total float64 `json:"total"`
}

// Fleet is `roamctl fleet -o json|yaml`.
type Fleet struct {
	Robots          []Robot  `json:"robots"`
	InvalidPolicies []string `json:"invalidPolicies,omitempty"`
}

// runFleet implements `roamctl fleet`.
func runFleet(ctx context.Context, prog string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(prog+" fleet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	kf := addKubeFlags(fs, false)
	output := fs.String("o", "", "output format: wide, json or yaml (default: a table)")
	fs.StringVar(output, "output", "", "same as -o")
	watch := fs.Bool("watch", false, "keep watching and redraw the table on every change")
	fs.BoolVar(watch, "w", false, "same as --watch")
	interval := fs.Duration("interval", time.Second, "with --watch: at most one redraw per interval")
	all := fs.Bool("all", false, "every node, not only robots (nodes with a roam.dev/ label, annotation or device)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "%s fleet: unexpected arguments %q\n", prog, pos)
		return 2
	}
	switch *output {
	case "", "wide", "json", "yaml":
	default:
		fmt.Fprintf(stderr, "%s fleet: -o %q: want wide, json or yaml\n", prog, *output)
		return 2
	}
	cs, _, err := kf.client()
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 1
	}
	w := newWatcher(cs, kf.globalNS)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := w.start(ctx, time.Minute); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 1
	}
	render := func(clear bool) error {
		s := w.snapshot()
		f := fleetOf(s, *all)
		if clear && (*output == "" || *output == "wide") {
			// Home the cursor and clear the screen: a redraw in place.
			fmt.Fprint(stdout, "\x1b[H\x1b[2J")
		}
		return writeFleet(stdout, f, *output)
	}
	if err := render(*watch); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 1
	}
	if !*watch {
		return 0
	}
	for {
		select {
		case <-ctx.Done():
			return 0
		case <-w.changed:
		}
		// Coalesce a burst of changes into one redraw.
		select {
		case <-ctx.Done():
			return 0
		case <-time.After(*interval):
		}
		select {
		case <-w.changed:
		default:
		}
		if err := render(true); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", prog, err)
			return 1
		}
	}
}

// isRobot reports whether n carries anything of roam's: a roam.dev/ label,
// annotation or extended resource.
func isRobot(n *corev1.Node) bool {
	for k := range n.Labels {
		if strings.HasPrefix(k, "roam.dev/") {
			return true
		}
	}
	for k := range n.Annotations {
		if strings.HasPrefix(k, "roam.dev/") {
			return true
		}
	}
	for k := range n.Status.Allocatable {
		if strings.HasPrefix(string(k), "roam.dev/") {
			return true
		}
	}
	return false
}

var phiRE = regexp.MustCompile(`\bphi (\d+(?:\.\d+)?|\+Inf|Inf)`)

// fleetOf computes the fleet view of s.
func fleetOf(s *snapshot, all bool) Fleet {
	ev := policies.NewEvaluator()
	f := Fleet{Robots: []Robot{}, InvalidPolicies: s.invalid}
	for _, n := range s.nodes {
		if !all && !isRobot(n) {
			continue
		}
		pods := s.podsOn(n.Name, nil)
		env := policies.NodeEnvFor(n, policies.RequestedBy(pods))
		r := Robot{
			Name:      n.Name,
			Context:   env.Context,
			Zone:      env.Zone,
			Location:  n.Annotations[policies.LocationAnnotation],
			Reachable: reachableNone,
			Ready:     "Unknown",
			Pods:      len(pods),
		}
		if env.Battery >= 0 {
			b := env.Battery
			r.Battery = &b
		}
		for _, c := range n.Status.Conditions {
			switch c.Type {
			case corev1.NodeReady:
				r.Ready = string(c.Status)
			case conditionReachable:
				r.ReachableMessage = c.Message
				switch {
				case c.Status == corev1.ConditionTrue:
					r.Reachable = reachableYes
				case c.Status == corev1.ConditionFalse:
					r.Reachable = reachableSuspected
				case c.Reason == reasonEvictionBrake:
					r.Reachable = reachableBraked
				default:
					r.Reachable = reachableUnknown
				}
				if m := phiRE.FindStringSubmatch(c.Message); m != nil {
					if v, err := strconv.ParseFloat(strings.TrimPrefix(m[1], "+"), 64); err == nil {
						r.Phi = &v
					}
				}
			}
		}
		for _, t := range n.Spec.Taints {
			r.Taints = append(r.Taints, t.Key+":"+string(t.Effect))
			if t.Key == policies.UnreachableTaint && (r.Reachable == reachableNone || r.Reachable == reachableYes) {
				r.Reachable = reachableSuspected
			}
		}
		for name, total := range env.Capacity {
			r.Devices = append(r.Devices, Device{Name: name, Free: env.Devices[name], Total: total})
		}
		sort.Slice(r.Devices, func(i, j int) bool { return r.Devices[i].Name < r.Devices[j].Name })
		for _, p := range pods {
			if res := policies.Resolve(ev, p, s.policies, s.globalNS); len(res.Policies) > 0 {
				r.GovernedPods++
			}
		}
		f.Robots = append(f.Robots, r)
	}
	return f
}

// writeFleet prints f as a table (format "" or "wide"), JSON or YAML.
func writeFleet(w io.Writer, f Fleet, format string) error {
	switch format {
	case "json":
		b, err := json.MarshalIndent(f, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	case "yaml":
		b, err := yaml.Marshal(f)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	wide := format == "wide"
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	header := "ROBOT\tCONTEXT\tZONE\tLOCATION\tBATTERY\tREACHABLE\tPHI\tDEVICES (FREE/TOTAL)\tGOVERNED PODS"
	if wide {
		header += "\tPODS\tREADY\tTAINTS\tMESSAGE"
	}
	fmt.Fprintln(tw, header)
	for _, r := range f.Robots {
		battery, phi := "-", "-"
		if r.Battery != nil {
			battery = fmt.Sprintf("%g%%", *r.Battery)
		}
		if r.Phi != nil {
			phi = fmt.Sprintf("%.1f", *r.Phi)
		}
		var devs []string
		for _, d := range r.Devices {
			devs = append(devs, fmt.Sprintf("%s %g/%g", shortResource(d.Name), d.Free, d.Total))
		}
		row := []string{r.Name, dash(r.Context), dash(r.Zone), dash(r.Location), battery, r.Reachable, phi,
			dash(strings.Join(devs, ", ")), strconv.Itoa(r.GovernedPods)}
		if wide {
			row = append(row, strconv.Itoa(r.Pods), r.Ready, dash(strings.Join(r.Taints, ",")), dash(r.ReachableMessage))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(f.Robots) == 0 {
		fmt.Fprintln(w, "no robots (nodes with a roam.dev/ label, annotation or device); --all lists every node")
	}
	for _, inv := range f.InvalidPolicies {
		fmt.Fprintf(w, "invalid policy (its last valid version, if any, keeps serving): %s\n", inv)
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
