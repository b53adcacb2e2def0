package contextcheck

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/roam-dev/roam/detector"
)

// ErrEvictionRefused wraps an eviction the API refused (a
// PodDisruptionBudget: HTTP 429); the node is retried with backoff.
var ErrEvictionRefused = errors.New("eviction refused")

func (c *Controller) forget(uid types.UID) {
	c.mu.Lock()
	delete(c.pending, uid)
	c.mu.Unlock()
}

// evict evicts pod through the Eviction API (policy/v1): a dry run first,
// so a PodDisruptionBudget refusal leaves the pod untouched; then the
// rate limit; then the DisruptionTarget condition (reason
// RoamContextChanged) and the eviction. The API server replaces the
// condition's reason with EvictionByEvictionAPI when it evicts, so roam
// sets its reason again afterwards: the terminating pod says why it goes.
func (c *Controller) evict(ctx context.Context, v Verdict, target string) (time.Duration, error) {
	logger := klog.FromContext(ctx)
	pod := v.Pod
	evictions := c.client.PolicyV1().Evictions(pod.Namespace)
	eviction := func(dryRun bool) *policyv1.Eviction {
		e := &policyv1.Eviction{
			ObjectMeta:    metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace},
			DeleteOptions: &metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(pod.UID))},
		}
		if dryRun {
			e.DeleteOptions.DryRun = []string{metav1.DryRunAll}
		}
		return e
	}
	gone := func(err error) bool { return apierrors.IsNotFound(err) || apierrors.IsConflict(err) }
	refused := func(err error) (time.Duration, error) {
		c.opts.Recorder.Eventf(pod, corev1.EventTypeWarning, ReasonEvictionRefused,
			"Eviction after a context change refused, retrying with backoff: %v", err)
		logger.Info("Context eviction refused, retrying", "pod", klog.KObj(pod), "err", err)
		return 0, fmt.Errorf("evicting pod %s/%s: %w: %w", pod.Namespace, pod.Name, ErrEvictionRefused, err)
	}

	if err := evictions.Evict(ctx, eviction(true)); err != nil {
		if gone(err) {
			c.forget(pod.UID)
			return 0, nil
		}
		if apierrors.IsTooManyRequests(err) {
			return refused(err)
		}
		return 0, fmt.Errorf("evicting pod %s/%s (dry run): %w", pod.Namespace, pod.Name, err)
	}
	now := c.clock.Now()
	if r := c.limiter.ReserveN(now, 1); !r.OK() {
		return c.opts.NoAlternativeRecheck, nil
	} else if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		logger.V(2).Info("Context eviction rate-limited", "pod", klog.KObj(pod), "wait", d)
		return d, nil
	}

	msg := fmt.Sprintf("roam-detector: node %s no longer satisfies the pod's policies (%s)", pod.Spec.NodeName, v.Why)
	if target != "" {
		msg += fmt.Sprintf("; node %s would take it", target)
	}
	if err := c.setCondition(ctx, pod, msg); err != nil {
		if apierrors.IsNotFound(err) {
			c.forget(pod.UID)
			return 0, nil
		}
		return 0, err
	}
	c.redeploy.Evicted(pod, detector.ReasonContext, c.clock.Now())
	if err := evictions.Evict(ctx, eviction(false)); err != nil {
		c.redeploy.Cancel(pod)
		if gone(err) {
			c.forget(pod.UID)
			return 0, nil
		}
		if apierrors.IsTooManyRequests(err) {
			return refused(err)
		}
		return 0, fmt.Errorf("evicting pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	if err := c.setCondition(ctx, pod, msg); err != nil && !apierrors.IsNotFound(err) {
		logger.V(2).Info("Could not restore the DisruptionTarget reason after eviction", "pod", klog.KObj(pod), "err", err)
	}
	c.forget(pod.UID)
	c.opts.Recorder.Eventf(pod, corev1.EventTypeWarning, ReasonContextChanged, "Evicted: %s", msg)
	if c.opts.Metrics != nil {
		c.opts.Metrics.Evictions.WithLabelValues(detector.ReasonContext).Inc()
	}
	logger.Info("Evicted pod after context change", "pod", klog.KObj(pod), "node", pod.Spec.NodeName, "alternative", target, "why", v.Why)
	return 0, nil
}

// setCondition patches the pod's DisruptionTarget condition (reason
// RoamContextChanged) through pods/status.
func (c *Controller) setCondition(ctx context.Context, pod *corev1.Pod, msg string) error {
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.PodCondition{{
		Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: ReasonContextChanged,
		Message: msg, LastTransitionTime: metav1.NewTime(c.clock.Now()),
	}}}})
	if err != nil {
		return fmt.Errorf("condition patch: %w", err)
	}
	if _, err := c.client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status"); err != nil {
		return fmt.Errorf("DisruptionTarget on pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}

// observePod feeds roam_redeploy_seconds{reason="context"}: the first pod
// of an evicted pod's owner to run after the eviction ends the measurement.
func (c *Controller) observePod(pod *corev1.Pod) {
	if pod.Status.Phase != corev1.PodRunning {
		return
	}
	if reason, d, ok := c.redeploy.Running(pod, c.clock.Now()); ok && c.opts.Metrics != nil {
		c.opts.Metrics.Redeploy.WithLabelValues(reason).Observe(d.Seconds())
	}
}
