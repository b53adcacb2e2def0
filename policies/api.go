// Package policies turns policy ConfigMaps into compiled expr-lang/expr
// programs and evaluates them for a pod and a node. The ConfigMap format and
// the expression environment are documented in docs/policies.md;
// roam-scheduler, roam-detector and roamctl all evaluate policies through
// this package so their answers always agree.
//
// The scheduler and the detector are written against the names below:
// change them only together with their callers and docs/design.md.
package policies

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/klog/v2"
)

// Well-known names shared by roam's components and its users (docs/design.md).
const (
	// PolicyLabel marks a ConfigMap as a roam policy (value "true").
	PolicyLabel = "roam.dev/policy"
	// PolicyAnnotation on a pod names the policy ConfigMap that governs it.
	PolicyAnnotation = "roam.dev/policy"
	// TargetAnnotation on a pod is "x,y": where the work is, in metres.
	TargetAnnotation = "roam.dev/target"
	// PreferFeaturesAnnotation on a pod lists NFD feature labels it prefers.
	PreferFeaturesAnnotation = "roam.dev/prefer-features"
	// ContextLabel on a node is the context the robot senses (hospital, store…).
	ContextLabel = "roam.dev/context"
	// ZoneLabel on a node is the site or zone.
	ZoneLabel = "topology.kubernetes.io/zone"
	// LocationAnnotation on a node is "x,y" in metres in the site frame.
	LocationAnnotation = "roam.dev/location"
	// BatteryAnnotation on a node is "0".."100".
	BatteryAnnotation = "roam.dev/battery"
	// FenceAnnotation on a node, set by roam-agent, is the Go duration after
	// which the agent freezes the robot's governed pods without an
	// acknowledged heartbeat; absent, the robot is unfenced.
	FenceAnnotation = "roam.dev/fence"
	// FenceLeaseNamespace holds one fence Lease per fenced robot, named
	// after its Node: roam-agent renews it, roam-detector watches it.
	FenceLeaseNamespace = "roam-agent"
	// FenceRevokedHolder is the holderIdentity roam-detector writes into a
	// robot's fence Lease to revoke it before it removes the robot's pods.
	FenceRevokedHolder = "roam-detector"
	// UnreachableTaint is set by roam-detector on a suspected robot.
	UnreachableTaint = "roam.dev/unreachable"
	// DefaultGlobalNamespace holds policies that govern every namespace.
	DefaultGlobalNamespace = "roam-system"
)

// Action says what to do with a governed pod when its robot fails or
// changes context.
type Action string

const (
	// Reschedule deletes or evicts the pod so its owner replaces it elsewhere.
	Reschedule Action = "reschedule"
	// Keep leaves the pod where it is.
	Keep Action = "keep"
)

// Policy is one valid, compiled policy ConfigMap. Policies are immutable
// once built; a new ConfigMap version yields a new Policy.
type Policy struct {
	Namespace       string
	Name            string
	ResourceVersion string

	// HasMatch is false when the policy has no `match` and governs only the
	// pods that name it.
	HasMatch bool
	// HasScore is false when the policy has no `score`.
	HasScore bool
	// Weight multiplies Score (default 1).
	Weight float64
	// OnContextChange (default Reschedule) and Settle (default 10 s) drive
	// context-change eviction.
	OnContextChange Action
	Settle          time.Duration
	// OnNodeFailure (default Reschedule) drives failure rescheduling.
	OnNodeFailure Action
	// PhiThreshold overrides the detector's threshold when > 0.
	PhiThreshold float64
	// ForceDelete lets the detector force-delete pods of a lost robot.
	ForceDelete bool
	// Freeze (default true) lets roam-agent freeze the policy's pods when
	// their robot loses the cluster; a pod one of whose policies says false
	// is never frozen and counts as unfenced.
	Freeze bool
	// AcceptDuplicates (default false) lets roam-detector replace the
	// policy's pods from an unfenced robot as fast as from a fenced one,
	// although the original may still be running there.
	AcceptDuplicates bool

	// compiled programs and their sources live in unexported fields.
	programs
}

// Key is "namespace/name".
func (p *Policy) Key() string { return p.Namespace + "/" + p.Name }

// Env is the typed environment every expression is compiled against.
type Env struct {
	Node NodeEnv `expr:"node"`
	Pod  PodEnv  `expr:"pod"`

	// slots are a NodeMemo's values while a memoized plan runs (expr
	// ignores unexported fields).
	slots []slot
}

// Point is a position in metres in the site frame; Known is false when the
// object carries no (or an unparsable) position.
type Point struct {
	X     float64 `expr:"x"`
	Y     float64 `expr:"y"`
	Known bool    `expr:"known"`
}

// NodeEnv is what an expression sees of a node.
type NodeEnv struct {
	Name        string            `expr:"name"`
	Labels      map[string]string `expr:"labels"`
	Annotations map[string]string `expr:"annotations"`
	Context     string            `expr:"context"`
	Zone        string            `expr:"zone"`
	Location    Point             `expr:"location"`
	// Devices are free units per extended resource: allocatable minus the
	// requests of the pods on the node. A missing key reads as 0.
	Devices map[string]float64 `expr:"devices"`
	// Capacity are allocatable units per extended resource.
	Capacity map[string]float64 `expr:"capacity"`
	// Battery is 0..100, or -1 when unknown.
	Battery float64  `expr:"battery"`
	Taints  []string `expr:"taints"`
}

// PodEnv is what an expression sees of a pod.
type PodEnv struct {
	Name        string            `expr:"name"`
	Namespace   string            `expr:"namespace"`
	Labels      map[string]string `expr:"labels"`
	Annotations map[string]string `expr:"annotations"`
	Target      Point             `expr:"target"`
}

// UnknownDistance is what Distance returns when either point is unknown: a
// large, finite penalty so scores stay comparable.
const UnknownDistance = 1e6

// Problem is one thing wrong with a policy ConfigMap.
type Problem struct {
	Key     string // data key, e.g. "require"; "" for the ConfigMap as a whole
	Line    int    // 1-based position inside the key's value; 0 when not positional
	Column  int
	Message string
	Snippet string // the offending line with a caret under Column
}

// ParseError lists every problem of one ConfigMap.
type ParseError struct {
	Namespace, Name string
	Problems        []Problem
}

// Resolution is the set of policies governing a pod.
type Resolution struct {
	// Policies must all hold; their scores add by weight.
	Policies []*Policy
	// Blocked is non-empty when the pod names a policy that is missing or
	// has never been valid: the pod must stay Pending with this text.
	Blocked string
}

// Change reports a new policy version; Old is nil on add, New nil on delete
// (an invalid update that keeps the last good version reports no Change).
type Change struct {
	Key      string
	Old, New *Policy
}

// StoreOptions configure a Store.
type StoreOptions struct {
	// GlobalNamespace holds policies governing every namespace
	// (default DefaultGlobalNamespace).
	GlobalNamespace string
	// Events receives InvalidPolicy Warning events on ConfigMaps (optional).
	Events EventRecorder
	// Registerer receives roam_policies and roam_policy_errors_total
	// (optional; roam-detector passes its registry).
	Registerer prometheus.Registerer
	// Logger receives a line per invalid policy version (default
	// klog.Background()).
	Logger klog.Logger
}

// EventRecorder is the subset of client-go's record.EventRecorder the
// Store uses.
type EventRecorder interface {
	Eventf(object runtime.Object, eventtype, reason, messageFmt string, args ...interface{})
}
