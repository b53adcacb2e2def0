package policies

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// InvalidPolicyReason is the reason of the Warning Event on an invalid
// policy ConfigMap.
const InvalidPolicyReason = "InvalidPolicy"

// maxEventMessage keeps Event messages within what the API accepts.
const maxEventMessage = 1024

// Store watches policy ConfigMaps and answers which policies govern a pod.
// It is safe for concurrent use.
type Store struct {
	globalNS string
	events   EventRecorder
	logger   klog.Logger
	metrics  *storeMetrics
	reg      cache.ResourceEventHandlerRegistration

	mu       sync.RWMutex
	entries  map[string]*entry // by namespace/name
	handlers []func(Change)
}

// entry is what the Store knows of one policy ConfigMap.
type entry struct {
	serving    *Policy     // last good version; nil when never valid
	invalid    *ParseError // problems of the current version; nil when it is valid
	reportedRV string      // resource version of the last reported invalid version
}

type storeMetrics struct {
	policies *prometheus.GaugeVec
	errors   prometheus.Counter
}

// NewStore registers the Store's handlers on factory's ConfigMap informer
// (filtered to PolicyLabel=true by the caller's factory options or by the
// Store itself). Start the factory after calling it.
func NewStore(factory informers.SharedInformerFactory, opts StoreOptions) (*Store, error) {
	s := &Store{
		globalNS: opts.GlobalNamespace,
		events:   opts.Events,
		logger:   opts.Logger,
		entries:  make(map[string]*entry),
	}
	if s.globalNS == "" {
		s.globalNS = DefaultGlobalNamespace
	}
	if s.logger.GetSink() == nil {
		s.logger = klog.Background()
	}
	s.logger = s.logger.WithName("policies")
	if opts.Registerer != nil {
		m, err := registerMetrics(opts.Registerer)
		if err != nil {
			return nil, err
		}
		s.metrics = m
	}
	informer := factory.Core().V1().ConfigMaps().Informer()
	reg, err := informer.AddEventHandler(cache.FilteringResourceEventHandler{
		FilterFunc: isPolicyConfigMap,
		Handler: cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { s.upsert(obj) },
			UpdateFunc: func(_, obj any) { s.upsert(obj) },
			DeleteFunc: s.remove,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("policies: watching ConfigMaps: %w", err)
	}
	s.reg = reg
	return s, nil
}

func registerMetrics(r prometheus.Registerer) (*storeMetrics, error) {
	m := &storeMetrics{
		policies: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "roam_policies",
			Help: "Policy ConfigMaps by the state of their current version (valid or invalid).",
		}, []string{"state"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "roam_policy_errors_total",
			Help: "Invalid policy ConfigMap versions seen (each version counted once).",
		}),
	}
	if err := r.Register(m.policies); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, fmt.Errorf("policies: registering roam_policies: %w", err)
		}
		m.policies = are.ExistingCollector.(*prometheus.GaugeVec)
	}
	if err := r.Register(m.errors); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, fmt.Errorf("policies: registering roam_policy_errors_total: %w", err)
		}
		m.errors = are.ExistingCollector.(prometheus.Counter)
	}
	m.policies.WithLabelValues("valid")
	m.policies.WithLabelValues("invalid")
	return m, nil
}

func isPolicyConfigMap(obj any) bool {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	cm, ok := obj.(*corev1.ConfigMap)
	return ok && cm.Labels[PolicyLabel] == "true"
}

func (s *Store) upsert(obj any) {
	cm, ok := obj.(*corev1.ConfigMap)
	if !ok {
		return
	}
	key := cm.Namespace + "/" + cm.Name

	s.mu.RLock()
	e := s.entries[key]
	unchanged := e != nil && ((e.invalid == nil && e.serving != nil && e.serving.ResourceVersion == cm.ResourceVersion) ||
		(e.invalid != nil && e.reportedRV == cm.ResourceVersion))
	s.mu.RUnlock()
	if unchanged { // resync
		return
	}

	p, err := Parse(cm)
	var pe *ParseError
	if err != nil && !errors.As(err, &pe) {
		pe = &ParseError{Namespace: cm.Namespace, Name: cm.Name, Problems: []Problem{{Message: err.Error()}}}
	}

	s.mu.Lock()
	e = s.entries[key]
	if e == nil {
		e = &entry{}
		s.entries[key] = e
	}
	var change *Change
	report := false
	if pe == nil {
		change = &Change{Key: key, Old: e.serving, New: p}
		e.serving, e.invalid, e.reportedRV = p, nil, ""
	} else {
		e.invalid = pe
		if e.reportedRV != cm.ResourceVersion {
			e.reportedRV = cm.ResourceVersion
			report = true
		}
	}
	serving := e.serving
	handlers := s.handlers
	s.updateGaugesLocked()
	s.mu.Unlock()

	if report {
		s.reportInvalid(cm, pe, serving)
	}
	if change != nil {
		for _, fn := range handlers {
			fn(*change)
		}
	}
}

// reportInvalid emits the Event, metric and log line of one invalid version.
func (s *Store) reportInvalid(cm *corev1.ConfigMap, pe *ParseError, serving *Policy) {
	var msg strings.Builder
	for i, p := range pe.Problems {
		if i > 0 {
			msg.WriteByte('\n')
		}
		msg.WriteString(p.String())
	}
	status := "it has never been valid and governs no pods"
	if serving != nil {
		status = "the last good version (resourceVersion " + serving.ResourceVersion + ") keeps serving"
	}
	text := msg.String() + "\n(" + status + ")"
	if s.events != nil {
		ev := text
		if len(ev) > maxEventMessage {
			ev = ev[:maxEventMessage-len("…")] + "…"
		}
		s.events.Eventf(cm, corev1.EventTypeWarning, InvalidPolicyReason, "%s", ev)
	}
	if s.metrics != nil {
		s.metrics.errors.Inc()
	}
	s.logger.Info("Invalid policy", "policy", klog.KObj(cm), "resourceVersion", cm.ResourceVersion,
		"problems", len(pe.Problems), "error", msg.String(), "status", status)
}

func (s *Store) remove(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	cm, ok := obj.(*corev1.ConfigMap)
	if !ok {
		return
	}
	key := cm.Namespace + "/" + cm.Name
	s.mu.Lock()
	var old *Policy
	if e := s.entries[key]; e != nil {
		old = e.serving
	}
	delete(s.entries, key)
	handlers := s.handlers
	s.updateGaugesLocked()
	s.mu.Unlock()
	if old != nil {
		for _, fn := range handlers {
			fn(Change{Key: key, Old: old})
		}
	}
}

func (s *Store) updateGaugesLocked() {
	if s.metrics == nil {
		return
	}
	valid, invalid := 0, 0
	for _, e := range s.entries {
		if e.invalid != nil {
			invalid++
		} else {
			valid++
		}
	}
	s.metrics.policies.WithLabelValues("valid").Set(float64(valid))
	s.metrics.policies.WithLabelValues("invalid").Set(float64(invalid))
}

// HasSynced reports whether the initial list of policies has been processed.
func (s *Store) HasSynced() bool { return s.reg.HasSynced() }

// GlobalNamespace is the namespace whose policies govern every namespace.
func (s *Store) GlobalNamespace() string { return s.globalNS }

// ForPod resolves the policies governing pod: the policy its annotation
// names, else every in-scope policy whose match holds. The annotation
// names a ConfigMap in the pod's namespace, or else in the global
// namespace. A match that fails to evaluate counts as not matching.
func (s *Store) ForPod(ev *Evaluator, pod *corev1.Pod) Resolution {
	if pod == nil {
		return Resolution{}
	}
	if _, ok := pod.Annotations[PolicyAnnotation]; ok {
		return resolve(ev, pod, s.globalNS, s.Get, nil, s.logger)
	}
	s.mu.RLock()
	candidates := make([]*Policy, 0, len(s.entries))
	for _, e := range s.entries {
		if p := e.serving; p != nil && p.HasMatch && (p.Namespace == pod.Namespace || p.Namespace == s.globalNS) {
			candidates = append(candidates, p)
		}
	}
	s.mu.RUnlock()
	return resolve(ev, pod, s.globalNS, s.Get, candidates, s.logger)
}

// Resolve is Store.ForPod over a fixed set of valid policies (for tools
// such as roamctl): the policy the pod's annotation names, else every
// policy of all in scope (the pod's namespace or globalNS) whose match
// holds.
func Resolve(ev *Evaluator, pod *corev1.Pod, all []*Policy, globalNS string) Resolution {
	if pod == nil {
		return Resolution{}
	}
	if globalNS == "" {
		globalNS = DefaultGlobalNamespace
	}
	get := func(namespace, name string) (*Policy, string) {
		for _, p := range all {
			if p.Namespace == namespace && p.Name == name {
				return p, ""
			}
		}
		return nil, fmt.Sprintf("no valid policy %s/%s", namespace, name)
	}
	var candidates []*Policy
	for _, p := range all {
		if p.HasMatch && (p.Namespace == pod.Namespace || p.Namespace == globalNS) {
			candidates = append(candidates, p)
		}
	}
	return resolve(ev, pod, globalNS, get, candidates, klog.Background())
}

func resolve(ev *Evaluator, pod *corev1.Pod, globalNS string, get func(ns, name string) (*Policy, string), candidates []*Policy, logger klog.Logger) Resolution {
	if name, ok := pod.Annotations[PolicyAnnotation]; ok {
		name = strings.TrimSpace(name)
		p, reason := get(pod.Namespace, name)
		if p == nil && pod.Namespace != globalNS {
			if gp, _ := get(globalNS, name); gp != nil {
				p = gp
			}
		}
		if p == nil {
			return Resolution{Blocked: fmt.Sprintf("pod names policy %q (annotation %s): %s", name, PolicyAnnotation, reason)}
		}
		return Resolution{Policies: []*Policy{p}}
	}
	// match is about the pod: it sees an empty node (battery unknown).
	env := Env{Node: NodeEnv{Battery: -1}, Pod: PodEnvFor(pod)}
	var out []*Policy
	for _, p := range candidates {
		if !p.HasMatch || (p.Namespace != pod.Namespace && p.Namespace != globalNS) {
			continue
		}
		ok, err := p.Match(ev, &env)
		if err != nil {
			logger.V(4).Info("Policy match failed", "policy", p.Key(), "pod", klog.KObj(pod), "err", err)
			continue
		}
		if ok {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return Resolution{Policies: out}
}

// Concerns reports whether c can change which policies govern pod: the
// changed policy is in pod's namespace (or in globalNS), and pod names it
// (annotation roam.dev/policy) or, naming none, its old or new match holds
// for pod.
func (c Change) Concerns(ev *Evaluator, pod *corev1.Pod, globalNS string) bool {
	ns, name, _ := strings.Cut(c.Key, "/")
	if pod.Namespace != ns && ns != globalNS {
		return false
	}
	if named, ok := pod.Annotations[PolicyAnnotation]; ok {
		return strings.TrimSpace(named) == name
	}
	// match is about the pod: it sees an empty node (battery unknown).
	env := Env{Node: NodeEnv{Battery: -1}, Pod: PodEnvFor(pod)}
	for _, p := range []*Policy{c.Old, c.New} {
		if p != nil && p.HasMatch {
			if ok, err := p.Match(ev, &env); err == nil && ok {
				return true
			}
		}
	}
	return false
}

// Get returns the serving version of a policy, or nil and a human-readable
// reason (missing, never valid).
func (s *Store) Get(namespace, name string) (*Policy, string) {
	key := namespace + "/" + name
	s.mu.RLock()
	e := s.entries[key]
	var serving *Policy
	var invalid *ParseError
	if e != nil {
		serving, invalid = e.serving, e.invalid
	}
	s.mu.RUnlock()
	switch {
	case e == nil:
		return nil, fmt.Sprintf("no policy %s exists (a ConfigMap labelled %s: \"true\")", key, PolicyLabel)
	case serving == nil:
		reason := fmt.Sprintf("policy %s has never been valid", key)
		if invalid != nil && len(invalid.Problems) > 0 {
			p := invalid.Problems[0]
			reason += ": " + strings.SplitN(p.String(), "\n", 2)[0]
			if n := len(invalid.Problems) - 1; n > 0 {
				reason += fmt.Sprintf(" (and %d more problems; see the InvalidPolicy events on the ConfigMap)", n)
			}
		}
		return nil, reason
	}
	return serving, ""
}

// Problems returns the problems of the current version of a policy, or nil
// when it is valid or unknown.
func (s *Store) Problems(namespace, name string) *ParseError {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if e := s.entries[namespace+"/"+name]; e != nil {
		return e.invalid
	}
	return nil
}

// List returns every serving policy, sorted by key.
func (s *Store) List() []*Policy {
	s.mu.RLock()
	out := make([]*Policy, 0, len(s.entries))
	for _, e := range s.entries {
		if e.serving != nil {
			out = append(out, e.serving)
		}
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

// AddChangeHandler calls fn (synchronously, in the informer's goroutine) on
// every new serving version of a policy.
func (s *Store) AddChangeHandler(fn func(Change)) {
	s.mu.Lock()
	s.handlers = append(s.handlers[:len(s.handlers):len(s.handlers)], fn)
	s.mu.Unlock()
}
