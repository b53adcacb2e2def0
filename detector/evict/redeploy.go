package evict

import (
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// MirrorPodAnnotation marks static (mirror) pods, which roam never moves.
const MirrorPodAnnotation = "kubernetes.io/config.mirror"

// Unmovable says why roam must never move pod — a mirror pod, a DaemonSet
// pod, a finished pod — or "" when it may.
func Unmovable(pod *corev1.Pod) string {
	if _, ok := pod.Annotations[MirrorPodAnnotation]; ok {
		return "mirror pod"
	}
	if ref := metav1.GetControllerOf(pod); ref != nil && ref.Kind == "DaemonSet" {
		return "DaemonSet pod"
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return "finished"
	}
	return ""
}

// RedeployTracker measures roam_redeploy_seconds: it remembers an eviction
// per owner until a replacement pod of the same owner runs. Safe for
// concurrent use.
type RedeployTracker struct {
	mu      sync.Mutex
	pending map[types.UID]eviction // by owner UID
}

type eviction struct {
	at     time.Time
	reason string
	pod    types.UID
}

// redeployForget bounds how long an eviction waits for its replacement.
const redeployForget = time.Hour

// NewRedeployTracker returns an empty tracker.
func NewRedeployTracker() *RedeployTracker {
	return &RedeployTracker{pending: map[types.UID]eviction{}}
}

// Evicted records that pod is being evicted for reason at time at; only
// the first eviction of an owner counts until its replacement runs. Call
// it before the API call that evicts, so a replacement can never run
// before its eviction is on record, and Cancel if that call fails.
func (r *RedeployTracker) Evicted(pod *corev1.Pod, reason string, at time.Time) {
	ref := metav1.GetControllerOf(pod)
	if ref == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, e := range r.pending {
		if at.Sub(e.at) > redeployForget {
			delete(r.pending, k)
		}
	}
	if _, ok := r.pending[ref.UID]; !ok {
		r.pending[ref.UID] = eviction{at: at, reason: reason, pod: pod.UID}
	}
}

// Cancel forgets the measurement Evicted started for pod (its eviction
// failed); a measurement started by another pod of the owner stays.
func (r *RedeployTracker) Cancel(pod *corev1.Pod) {
	ref := metav1.GetControllerOf(pod)
	if ref == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.pending[ref.UID]; ok && e.pod == pod.UID {
		delete(r.pending, ref.UID)
	}
}

// Running reports, for a Running pod, whether it replaces an evicted pod
// of its owner, with the eviction's reason and how long the redeploy took.
func (r *RedeployTracker) Running(pod *corev1.Pod, now time.Time) (string, time.Duration, bool) {
	ref := metav1.GetControllerOf(pod)
	if ref == nil {
		return "", 0, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.pending[ref.UID]
	if !ok || e.pod == pod.UID || pod.CreationTimestamp.Time.Before(e.at.Add(-time.Second)) {
		return "", 0, false
	}
	delete(r.pending, ref.UID)
	return e.reason, now.Sub(e.at), true
}
