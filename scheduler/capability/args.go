package capability

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

// MaxWeight bounds each component weight.
const MaxWeight = 100

// RoamCapabilityArgs configures the RoamCapability plugin: the weight of
// each score component (0 turns a component off).
type RoamCapabilityArgs struct {
	// DeviceWeight weighs the free units of the extended resources the pod
	// requests (after placing it). Default 1.
	DeviceWeight *int64 `json:"deviceWeight,omitempty"`
	// FeatureWeight weighs how many of the NFD feature labels listed in the
	// pod's roam.dev/prefer-features the node carries. Default 1.
	FeatureWeight *int64 `json:"featureWeight,omitempty"`
	// LocationWeight weighs nearness of the node's roam.dev/location to the
	// pod's roam.dev/target. Default 1.
	LocationWeight *int64 `json:"locationWeight,omitempty"`
}

// SetDefaults fills the unset weights with 1.
func (a *RoamCapabilityArgs) SetDefaults() {
	for _, w := range []**int64{&a.DeviceWeight, &a.FeatureWeight, &a.LocationWeight} {
		if *w == nil {
			one := int64(1)
			*w = &one
		}
	}
}

// Validate reports every invalid field of (defaulted) a, naming the field.
func (a *RoamCapabilityArgs) Validate() error {
	var errs field.ErrorList
	check := func(name string, w *int64) {
		if w != nil && (*w < 0 || *w > MaxWeight) {
			errs = append(errs, field.Invalid(field.NewPath(name), *w, fmt.Sprintf("must be in 0..%d", MaxWeight)))
		}
	}
	check("deviceWeight", a.DeviceWeight)
	check("featureWeight", a.FeatureWeight)
	check("locationWeight", a.LocationWeight)
	if err := errs.ToAggregate(); err != nil {
		return fmt.Errorf("%s args: %w", Name, err)
	}
	return nil
}

func decodeArgs(obj runtime.Object) (*RoamCapabilityArgs, error) {
	args := &RoamCapabilityArgs{}
	switch o := obj.(type) {
	case nil:
	case *RoamCapabilityArgs:
		*args = *o.DeepCopyObject().(*RoamCapabilityArgs)
	case *runtime.Unknown:
		if err := yaml.UnmarshalStrict(o.Raw, args); err != nil {
			return nil, fmt.Errorf("%s args: %w", Name, err)
		}
	default:
		return nil, fmt.Errorf("%s args: want *runtime.Unknown or *RoamCapabilityArgs, got %T", Name, obj)
	}
	args.SetDefaults()
	if err := args.Validate(); err != nil {
		return nil, err
	}
	return args, nil
}

// DeepCopyObject implements runtime.Object.
func (a *RoamCapabilityArgs) DeepCopyObject() runtime.Object {
	out := &RoamCapabilityArgs{}
	cp := func(w *int64) *int64 {
		if w == nil {
			return nil
		}
		v := *w
		return &v
	}
	out.DeviceWeight, out.FeatureWeight, out.LocationWeight = cp(a.DeviceWeight), cp(a.FeatureWeight), cp(a.LocationWeight)
	return out
}

// GetObjectKind implements runtime.Object.
func (a *RoamCapabilityArgs) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }
