package policy

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/roam-dev/roam/policies"
	"github.com/roam-dev/roam/scheduler/capability"
)

// RoamPolicyArgs configures the RoamPolicy plugin (pluginConfig args of
// the KubeSchedulerConfiguration profile).
type RoamPolicyArgs struct {
	// GlobalNamespace holds the policies that govern pods of every
	// namespace. Default "roam-system".
	GlobalNamespace string `json:"globalNamespace,omitempty"`
	// RejectUnreachable rejects nodes tainted roam.dev/unreachable for
	// governed pods, even when a pod tolerates the taint. Default true.
	RejectUnreachable *bool `json:"rejectUnreachable,omitempty"`
	// PolicySyncTimeout bounds how long the plugin waits at start for the
	// initial list of policy ConfigMaps. Default 60s.
	PolicySyncTimeout *metav1.Duration `json:"policySyncTimeout,omitempty"`

	// Score weights, each 0..100 (0 turns a component off). A node's score
	// is the weighted mean of the components that apply to the pod, each
	// normalized to 0..100 over the feasible nodes.

	// PolicyWeight weighs the governing policies' scores (their weighted
	// sum). Default 8.
	PolicyWeight *int64 `json:"policyWeight,omitempty"`
	// DeviceWeight weighs the free units of the extended resources the pod
	// requests (after placing it). Default 1.
	DeviceWeight *int64 `json:"deviceWeight,omitempty"`
	// FeatureWeight weighs how many of the NFD feature labels listed in the
	// pod's roam.dev/prefer-features the node carries. Default 1.
	FeatureWeight *int64 `json:"featureWeight,omitempty"`
	// LocationWeight weighs nearness of the node's roam.dev/location to the
	// pod's roam.dev/target. Default 2.
	LocationWeight *int64 `json:"locationWeight,omitempty"`
}

// SetDefaults fills the unset fields of a with their defaults.
func (a *RoamPolicyArgs) SetDefaults() {
	if a.GlobalNamespace == "" {
		a.GlobalNamespace = policies.DefaultGlobalNamespace
	}
	a.RejectUnreachable = orDefault(a.RejectUnreachable, true)
	a.PolicySyncTimeout = orDefault(a.PolicySyncTimeout, metav1.Duration{Duration: 60 * time.Second})
	a.PolicyWeight = orDefault(a.PolicyWeight, capability.DefaultPolicyWeight)
	a.DeviceWeight = orDefault(a.DeviceWeight, capability.DefaultDeviceWeight)
	a.FeatureWeight = orDefault(a.FeatureWeight, capability.DefaultFeatureWeight)
	a.LocationWeight = orDefault(a.LocationWeight, capability.DefaultLocationWeight)
}

// Validate reports every invalid field of (defaulted) a, naming the field.
func (a *RoamPolicyArgs) Validate() error {
	var errs field.ErrorList
	for _, msg := range validation.IsDNS1123Label(a.GlobalNamespace) {
		errs = append(errs, field.Invalid(field.NewPath("globalNamespace"), a.GlobalNamespace, msg))
	}
	if a.PolicySyncTimeout != nil && a.PolicySyncTimeout.Duration <= 0 {
		errs = append(errs, field.Invalid(field.NewPath("policySyncTimeout"), a.PolicySyncTimeout.Duration.String(), "must be positive"))
	}
	if a.PolicyWeight != nil && (*a.PolicyWeight < 0 || *a.PolicyWeight > capability.MaxWeight) {
		errs = append(errs, field.Invalid(field.NewPath("policyWeight"), *a.PolicyWeight, fmt.Sprintf("must be in 0..%d", capability.MaxWeight)))
	}
	errs = append(errs, capability.Weights{Device: deref(a.DeviceWeight), Feature: deref(a.FeatureWeight), Location: deref(a.LocationWeight)}.Validate(nil)...)
	if err := errs.ToAggregate(); err != nil {
		return fmt.Errorf("%s args: %w", Name, err)
	}
	return nil
}

// decodeArgs turns the framework's args object (nil, *runtime.Unknown from
// the configuration file, or a typed *RoamPolicyArgs) into defaulted,
// validated args. Unknown fields are an error.
func decodeArgs(obj runtime.Object) (*RoamPolicyArgs, error) {
	args := &RoamPolicyArgs{}
	switch o := obj.(type) {
	case nil:
	case *RoamPolicyArgs:
		*args = *o.DeepCopyObject().(*RoamPolicyArgs)
	case *runtime.Unknown:
		if err := yaml.UnmarshalStrict(o.Raw, args); err != nil {
			return nil, fmt.Errorf("%s args: %w", Name, err)
		}
	default:
		return nil, fmt.Errorf("%s args: want *runtime.Unknown or *RoamPolicyArgs, got %T", Name, obj)
	}
	args.SetDefaults()
	if err := args.Validate(); err != nil {
		return nil, err
	}
	return args, nil
}

// DeepCopyObject implements runtime.Object so typed args can be handed to
// the framework directly (tests, embedding).
func (a *RoamPolicyArgs) DeepCopyObject() runtime.Object {
	out := *a
	out.RejectUnreachable, out.PolicySyncTimeout = copyOf(a.RejectUnreachable), copyOf(a.PolicySyncTimeout)
	out.PolicyWeight, out.DeviceWeight = copyOf(a.PolicyWeight), copyOf(a.DeviceWeight)
	out.FeatureWeight, out.LocationWeight = copyOf(a.FeatureWeight), copyOf(a.LocationWeight)
	return &out
}

// orDefault returns p, or a pointer to def when p is nil.
func orDefault[T any](p *T, def T) *T {
	if p == nil {
		return &def
	}
	return p
}

// copyOf returns a pointer to a copy of *p (nil for nil).
func copyOf[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

func deref(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

// GetObjectKind implements runtime.Object.
func (a *RoamPolicyArgs) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }
