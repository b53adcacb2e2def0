package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/roam-dev/roam/policies"
)

// kubeFlags are the flags that pick a cluster, as kubectl's do: the
// kubeconfig from --kubeconfig, else $KUBECONFIG, else ~/.kube/config, and
// its current context unless --context names another.
type kubeFlags struct {
	kubeconfig string
	context    string
	namespace  string
	globalNS   string
}

func addKubeFlags(fs *flag.FlagSet, withNamespace bool) *kubeFlags {
	f := &kubeFlags{}
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
	fs.StringVar(&f.context, "context", "", "kubeconfig context (default: the current context)")
	fs.StringVar(&f.globalNS, "global-namespace", policies.DefaultGlobalNamespace, "namespace whose policies govern every namespace")
	if withNamespace {
		fs.StringVar(&f.namespace, "namespace", "", "namespace (default: the context's namespace, else default)")
		fs.StringVar(&f.namespace, "n", "", "shorthand for --namespace")
	}
	return f
}

// client builds a clientset and returns it with the namespace to use.
func (f *kubeFlags) client() (kubernetes.Interface, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = f.kubeconfig
	overrides := &clientcmd.ConfigOverrides{CurrentContext: f.context}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
	cfg, err := cc.ClientConfig()
	if err != nil {
		if clientcmd.IsEmptyConfig(err) {
			return nil, "", errors.New("no cluster configured: pass --kubeconfig, set KUBECONFIG or create ~/.kube/config")
		}
		return nil, "", fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.UserAgent = "roamctl"
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, "", fmt.Errorf("client: %w", err)
	}
	ns := f.namespace
	if ns == "" {
		if ns, _, err = cc.Namespace(); err != nil || ns == "" {
			ns = metav1.NamespaceDefault
		}
	}
	return cs, ns, nil
}

// parseInterspersed parses fs from args, letting flags follow positional
// arguments (roamctl why POD -n ns), and returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if rest[0] == "--" {
			return append(pos, rest[1:]...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// snapshot is what fleet and why read of a cluster at one moment.
type snapshot struct {
	nodes    []*corev1.Node
	pods     []*corev1.Pod // every pod, any namespace
	policies []*policies.Policy
	invalid  []string // policy ConfigMaps that do not parse: "ns/name: error"
	globalNS string
}

// podsOn returns the non-terminal pods bound to node, without skip.
func (s *snapshot) podsOn(node string, skip *corev1.Pod) []*corev1.Pod {
	var out []*corev1.Pod
	for _, p := range s.pods {
		if p.Spec.NodeName != node || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		if skip != nil && p.UID == skip.UID && p.UID != "" {
			continue
		}
		out = append(out, p)
	}
	return out
}

// watcher keeps informers on the nodes, pods and policy ConfigMaps of a
// cluster and reports each change.
type watcher struct {
	nodes, pods, policyCMs cache.SharedIndexInformer
	changed                chan struct{}
	globalNS               string
}

func newWatcher(cs kubernetes.Interface, globalNS string) *watcher {
	all := informers.NewSharedInformerFactory(cs, 0)
	pol := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = policies.PolicyLabel + "=true"
	}))
	w := &watcher{
		nodes:     all.Core().V1().Nodes().Informer(),
		pods:      all.Core().V1().Pods().Informer(),
		policyCMs: pol.Core().V1().ConfigMaps().Informer(),
		changed:   make(chan struct{}, 1),
		globalNS:  globalNS,
	}
	notify := func() {
		select {
		case w.changed <- struct{}{}:
		default:
		}
	}
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { notify() },
		UpdateFunc: func(any, any) { notify() },
		DeleteFunc: func(any) { notify() },
	}
	for _, inf := range []cache.SharedIndexInformer{w.nodes, w.pods, w.policyCMs} {
		_, _ = inf.AddEventHandler(h)
	}
	return w
}

// start runs the informers until ctx ends and waits for their first list.
func (w *watcher) start(ctx context.Context, timeout time.Duration) error {
	for _, inf := range []cache.SharedIndexInformer{w.nodes, w.pods, w.policyCMs} {
		go inf.Run(ctx.Done())
	}
	syncCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), w.nodes.HasSynced, w.pods.HasSynced, w.policyCMs.HasSynced) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("could not list nodes, pods and policy ConfigMaps within %s", timeout)
	}
	return nil
}

// snapshot copies the informers' current state.
func (w *watcher) snapshot() *snapshot {
	s := &snapshot{globalNS: w.globalNS}
	for _, o := range w.nodes.GetStore().List() {
		s.nodes = append(s.nodes, o.(*corev1.Node))
	}
	sort.Slice(s.nodes, func(i, j int) bool { return s.nodes[i].Name < s.nodes[j].Name })
	for _, o := range w.pods.GetStore().List() {
		s.pods = append(s.pods, o.(*corev1.Pod))
	}
	sort.Slice(s.pods, func(i, j int) bool {
		if s.pods[i].Namespace != s.pods[j].Namespace {
			return s.pods[i].Namespace < s.pods[j].Namespace
		}
		return s.pods[i].Name < s.pods[j].Name
	})
	var cms []*corev1.ConfigMap
	for _, o := range w.policyCMs.GetStore().List() {
		cms = append(cms, o.(*corev1.ConfigMap))
	}
	sort.Slice(cms, func(i, j int) bool { return cms[i].Namespace+"/"+cms[i].Name < cms[j].Namespace+"/"+cms[j].Name })
	for _, cm := range cms {
		p, err := policies.Parse(cm)
		if err != nil {
			// ParseError's text starts with the ConfigMap's namespace/name.
			msg := firstLine(err.Error())
			if !strings.HasPrefix(msg, cm.Namespace+"/"+cm.Name) {
				msg = cm.Namespace + "/" + cm.Name + ": " + msg
			}
			s.invalid = append(s.invalid, msg)
			continue
		}
		s.policies = append(s.policies, p)
	}
	return s
}

// loadSnapshot reads the cluster once.
func loadSnapshot(ctx context.Context, cs kubernetes.Interface, globalNS string) (*snapshot, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := newWatcher(cs, globalNS)
	if err := w.start(ctx, time.Minute); err != nil {
		return nil, err
	}
	return w.snapshot(), nil
}

// warnInvalid prints the invalid policies a command skipped.
func warnInvalid(stderr io.Writer, s *snapshot) {
	for _, inv := range s.invalid {
		fmt.Fprintf(stderr, "warning: invalid policy ignored: %s\n", inv)
	}
}

// shortResource drops the roam.dev/ prefix of a device name.
func shortResource(name string) string {
	return strings.TrimPrefix(name, "roam.dev/")
}
