package cluster

import (
	"container/heap"
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

// beat is a robot's next heartbeat arrival.
type beat struct {
	at    time.Time
	robot *robot
}

type beatHeap []beat

func (h beatHeap) Len() int           { return len(h) }
func (h beatHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h beatHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *beatHeap) Push(x any)        { *h = append(*h, x.(beat)) }
func (h *beatHeap) Pop() any {
	old := *h
	b := old[len(old)-1]
	*h = old[:len(old)-1]
	return b
}

// heartbeats renews every live robot's Lease at the arrival times of the
// network model: one goroutine with a timer heap decides when, a few
// workers write (so one slow write does not delay the others).
func (s *sim) heartbeats(ctx context.Context) {
	h := &beatHeap{}
	for _, r := range s.robots {
		if at, ok := r.net.Next(); ok {
			heap.Push(h, beat{at: s.origin.Add(at), robot: r})
		}
	}
	work := make(chan beat, len(s.robots))
	for range 4 {
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case b := <-work:
					s.renew(ctx, b.robot, b.at)
				}
			}
		}()
	}
	for h.Len() > 0 {
		b := heap.Pop(h).(beat)
		if d := b.at.Sub(s.clock.Now()); d > 0 {
			t := s.clock.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C():
			}
		}
		if s.isLost(b.robot) {
			continue // a lost robot sends nothing, ever again
		}
		select {
		case work <- b:
		default:
			s.mu.Lock()
			s.renewalsDropped++
			s.mu.Unlock()
			klog.FromContext(ctx).V(2).Info("Heartbeat dropped: writers busy", "robot", b.robot.spec.Name)
		}
		if at, ok := b.robot.net.Next(); ok {
			heap.Push(h, beat{at: s.origin.Add(at), robot: b.robot})
		}
	}
}

func (s *sim) isLost(r *robot) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return r.lost
}

// renew writes the robot's Lease renewTime, as its kubelet does, and
// records how late the write landed against the model's arrival time due.
func (s *sim) renew(ctx context.Context, r *robot, due time.Time) {
	if s.isLost(r) {
		return
	}
	now := s.clock.Now()
	patch, err := json.Marshal(map[string]any{"spec": map[string]any{"renewTime": metav1.NewMicroTime(now)}})
	if err != nil {
		return
	}
	_, err = s.client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Patch(ctx, r.spec.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		if ctx.Err() == nil {
			klog.FromContext(ctx).V(1).Info("Lease renewal failed", "robot", r.spec.Name, "err", err)
		}
		return
	}
	late := s.clock.Since(due)
	s.mu.Lock()
	if now.After(r.lastBeat) {
		r.lastBeat = now
	}
	r.beats++
	s.renewals++
	if late > time.Second {
		s.renewalsLate++
	}
	s.maxLate = max(s.maxLate, late)
	s.mu.Unlock()
}

// podEvent is the pod informer's handler: it records what the measurements
// need and queues pods bound to the sim's robots for its kubelet.
func (s *sim) podEvent(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			pod, _ = tomb.Obj.(*corev1.Pod)
		}
		if pod == nil {
			return
		}
	}
	s.observePod(pod, false)
	if _, ours := s.robots[pod.Spec.NodeName]; ours {
		if key, err := cache.MetaNamespaceKeyFunc(pod); err == nil {
			s.queue.Add(key)
		}
	}
}

func (s *sim) kubeletWorker(ctx context.Context) {
	for {
		key, quit := s.queue.Get()
		if quit {
			return
		}
		requeue, err := s.syncPod(ctx, key)
		switch {
		case err != nil && ctx.Err() == nil:
			klog.FromContext(ctx).V(1).Info("Kubelet sync failed, retrying", "pod", key, "err", err)
			s.queue.AddRateLimited(key)
		case requeue > 0:
			s.queue.Forget(key)
			s.queue.AddAfter(key, requeue)
		default:
			s.queue.Forget(key)
		}
		s.queue.Done(key)
	}
}

// syncPod acts as the kubelet of the pod's robot: a live robot starts a
// bound pod after the start delay and finishes a terminating pod at once;
// a lost robot does nothing.
func (s *sim) syncPod(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	pod, err := s.pods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	r := s.robots[pod.Spec.NodeName]
	if r == nil || s.isLost(r) {
		return 0, nil
	}
	if pod.DeletionTimestamp != nil {
		err := s.client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{
			GracePeriodSeconds: ptr.To[int64](0), Preconditions: &metav1.Preconditions{UID: &pod.UID},
		})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return 0, fmt.Errorf("deleting terminated pod: %w", err)
		}
		return 0, nil
	}
	if pod.Status.Phase != corev1.PodPending && pod.Status.Phase != "" {
		return 0, nil
	}
	s.mu.Lock()
	bound := s.bound[pod.UID]
	s.mu.Unlock()
	now := s.clock.Now()
	if wait := bound.Add(s.cfg.StartDelay).Sub(now); wait > 0 {
		return wait, nil
	}
	running := pod.DeepCopy()
	setRunning(running, r, now)
	if _, err := s.client.CoreV1().Pods(ns).UpdateStatus(ctx, running, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return 0, nil
		}
		return 0, fmt.Errorf("setting pod Running: %w", err)
	}
	s.podStarted(pod, s.clock.Now())
	return 0, nil
}

// setRunning fills in the status a kubelet reports for a started pod.
func setRunning(pod *corev1.Pod, r *robot, now time.Time) {
	t := metav1.NewTime(now)
	pod.Status.Phase = corev1.PodRunning
	pod.Status.StartTime = &t
	pod.Status.HostIP = fmt.Sprintf("10.0.%d.%d", r.spec.Index/250, r.spec.Index%250+1)
	pod.Status.PodIP = fmt.Sprintf("10.%d.%d.%d", 100+r.spec.Index/250, r.spec.Index%250, 2+len(pod.UID)%200)
	keep := pod.Status.Conditions[:0]
	for _, c := range pod.Status.Conditions {
		switch c.Type {
		case corev1.PodInitialized, corev1.PodReady, corev1.ContainersReady, corev1.PodReadyToStartContainers:
		default:
			keep = append(keep, c)
		}
	}
	pod.Status.Conditions = keep
	for _, ct := range []corev1.PodConditionType{corev1.PodReadyToStartContainers, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{Type: ct, Status: corev1.ConditionTrue, LastTransitionTime: t})
	}
	pod.Status.ContainerStatuses = nil
	for _, c := range pod.Spec.Containers {
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: c.Image, ContainerID: "sim://" + string(pod.UID) + "/" + c.Name,
			Ready: true, Started: ptr.To(true), State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: t}},
		})
	}
}
