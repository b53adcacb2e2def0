package publish

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/roam-dev/roam/agent/state"
)

// FieldManager is the server-side apply field manager of the agent.
const FieldManager = "roam-agent"

// yieldFor is how long a key another manager owns is left out of the
// agent's applies before the agent tries it again.
const yieldFor = time.Minute

// NodeApplier writes a state into a Node by server-side apply. It owns only
// the keys the state sets: a key it stops setting is removed (unless another
// manager also owns it). It never forces: when another field manager owns a
// key with a different value, the apply conflicts, and the applier leaves
// that key to the other manager (reported through OnYield) and applies the
// rest; it tries the key again after a minute, which changes nothing while
// the other manager still holds it.
type NodeApplier struct {
	client  kubernetes.Interface
	node    string
	clock   clock.PassiveClock
	onYield func(fields []string, err error)
	mu      sync.Mutex
	yielded map[string]time.Time // ".metadata.labels.<key>" → until
	manager string
}

// ApplierOptions configure a NodeApplier.
type ApplierOptions struct {
	// FieldManager defaults to FieldManager.
	FieldManager string
	// Clock defaults to the real clock.
	Clock clock.PassiveClock
	// OnYield is called with the fields left to another manager.
	OnYield func(fields []string, err error)
}

// NewNodeApplier returns an applier for the Node named node.
func NewNodeApplier(client kubernetes.Interface, node string, opts ApplierOptions) *NodeApplier {
	if opts.FieldManager == "" {
		opts.FieldManager = FieldManager
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	return &NodeApplier{client: client, node: node, clock: opts.Clock, onYield: opts.OnYield,
		yielded: map[string]time.Time{}, manager: opts.FieldManager}
}

const (
	labelsPath      = ".metadata.labels."
	annotationsPath = ".metadata.annotations."
)

// Write applies s to the Node.
func (a *NodeApplier) Write(ctx context.Context, s state.State) error {
	labels, annotations := s.NodeLabels(), s.NodeAnnotations()
	skip := a.currentYields()
	err := a.apply(ctx, labels, annotations, skip)
	if !apierrors.IsConflict(err) {
		return err
	}
	fields := conflictFields(err)
	if len(fields) == 0 {
		return err
	}
	a.mu.Lock()
	until := a.clock.Now().Add(yieldFor)
	for _, f := range fields {
		a.yielded[f] = until
		skip[f] = true
	}
	a.mu.Unlock()
	if a.onYield != nil {
		a.onYield(fields, err)
	}
	klog.InfoS("Another field manager owns some of the robot's keys on its Node; leaving them to it", "node", a.node, "fields", fields)
	return a.apply(ctx, labels, annotations, skip)
}

func (a *NodeApplier) currentYields() map[string]bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.clock.Now()
	skip := map[string]bool{}
	for f, until := range a.yielded {
		if now.Before(until) {
			skip[f] = true
		} else {
			delete(a.yielded, f)
		}
	}
	return skip
}

func (a *NodeApplier) apply(ctx context.Context, labels, annotations map[string]string, skip map[string]bool) error {
	ac := corev1ac.Node(a.node)
	// Empty maps are set explicitly so that a state that sets nothing
	// still releases the keys the agent owned.
	ac.Labels, ac.Annotations = map[string]string{}, map[string]string{}
	for k, v := range labels {
		if !skip[labelsPath+k] {
			ac.Labels[k] = v
		}
	}
	for k, v := range annotations {
		if !skip[annotationsPath+k] {
			ac.Annotations[k] = v
		}
	}
	_, err := a.client.CoreV1().Nodes().Apply(ctx, ac, metav1.ApplyOptions{FieldManager: a.manager})
	if err != nil {
		return fmt.Errorf("applying roam's keys to node %s: %w", a.node, err)
	}
	return nil
}

// conflictFields returns the label and annotation fields a server-side
// apply conflict names.
func conflictFields(err error) []string {
	var out []string
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return nil
	}
	details := status.Status().Details
	if details == nil {
		return nil
	}
	for _, c := range details.Causes {
		if c.Type != metav1.CauseTypeFieldManagerConflict {
			continue
		}
		if strings.HasPrefix(c.Field, labelsPath) || strings.HasPrefix(c.Field, annotationsPath) {
			out = append(out, c.Field)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
