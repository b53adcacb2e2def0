package detector

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
)

// Event reasons of the adaptive eviction timeouts.
const (
	// ReasonLinkTooPoor: the robot's link needs a longer eviction timeout
	// than the ceiling for its share of the false-eviction budget (Warning).
	ReasonLinkTooPoor = "RoamLinkTooPoor"
	// ReasonLinkAdequate: it no longer does (Normal).
	ReasonLinkAdequate = "RoamLinkAdequate"
)

// linkNote is the RoamReachable message's account of the node's adaptive
// eviction timeout ("" when adaptive timeouts are off).
func linkNote(l LinkStatus) string {
	switch {
	case l.Prior:
		return "; too little history to estimate its link yet: evicted by the phi threshold and the eviction confirmation"
	case l.EvictionTimeout <= 0:
		return ""
	case l.TooPoor:
		return fmt.Sprintf("; evicted after %v of silence, the ceiling: its link would need %v (est. %.2g false evictions per 1000 h at the ceiling)",
			l.EvictionTimeout, l.Needed.Round(100*time.Millisecond), l.FalseEvictionRate)
	}
	return fmt.Sprintf("; evicted after %v of silence (est. %.2g false evictions per 1000 h)", l.EvictionTimeout.Round(10*time.Millisecond), l.FalseEvictionRate)
}

// reportLink logs and records on the Node that its link became, or stopped
// being, too poor for fast failover.
func (c *Controller) reportLink(ctx context.Context, in Intent) {
	logger := klog.FromContext(ctx)
	st := c.core.Status(in.Node, c.clock.Now()).Link
	obj, exists, err := c.nodeInf.GetIndexer().GetByKey(in.Node)
	node, _ := obj.(*corev1.Node)
	if in.Active {
		logger.Info("Robot's link too poor for fast failover", "node", in.Node, "evictionTimeout", in.EvictionTimeout,
			"needed", st.Needed, "falseEvictionsPer1000h", st.FalseEvictionRate)
	} else {
		logger.Info("Robot's link fits under the eviction-timeout ceiling again", "node", in.Node, "evictionTimeout", in.EvictionTimeout)
	}
	if err != nil || !exists || node == nil || c.opts.Recorder == nil {
		return
	}
	if in.Active {
		c.opts.Recorder.Eventf(node, corev1.EventTypeWarning, ReasonLinkTooPoor,
			"This robot's link is too poor for fast failover: its silences need an eviction timeout of %v for its share of the false-eviction budget; held at the ceiling %v (est. %.2g false evictions per 1000 h)",
			st.Needed.Round(100*time.Millisecond), in.EvictionTimeout, st.FalseEvictionRate)
		return
	}
	c.opts.Recorder.Eventf(node, corev1.EventTypeNormal, ReasonLinkAdequate,
		"This robot's link fits under the eviction-timeout ceiling again: evicted after %v of silence", in.EvictionTimeout.Round(10*time.Millisecond))
}
