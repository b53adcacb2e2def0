package main

import (
	"context"
	"crypto/x509"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	agenthb "github.com/roam-dev/roam/agent/heartbeat"
	"github.com/roam-dev/roam/internal/controlplane"
	"github.com/roam-dev/roam/internal/controlplane/cptest"
	"github.com/roam-dev/roam/internal/testutil"
)

// Two roam-detector processes receive a robot's direct heartbeats (the
// agent proves its node with a pod-bound token, checked by the real API
// server); only the leader acknowledges. The leader is killed: the standby,
// which kept receiving, takes the Lease and the acknowledgements resume
// from it without a new session.
func TestDirectHeartbeatsSurviveALeaderChange(t *testing.T) {
	cp, cs := cptest.Start(t, controlplane.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, ns := range []string{"roam-system", "roam-agent"} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cs.CoreV1().ServiceAccounts("roam-agent").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "roam-agent"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "robot-d"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	token := testutil.PodBoundToken(ctx, t, cs, "roam-agent", "roam-agent", "robot-d")

	start := func() (*detectorProc, string) {
		sessions := freeAddr(t)
		_, port, err := net.SplitHostPort(freeAddr(t))
		if err != nil {
			t.Fatal(err)
		}
		return startDetector(t, cp.Kubeconfig, "--leader-elect-lease-duration=4s", "--leader-elect-renew-deadline=3s",
			"--leader-elect-retry-period=500ms", "--heartbeat-listen=127.0.0.1:"+port, "--heartbeat-session-listen="+sessions,
			"--heartbeat-tls-dns-names=roam-detector.test"), sessions
	}
	a, aSessions := start()
	waitUntil(ctx, t, "the first detector to lead", 120*time.Second, func(context.Context) (bool, error) { return a.role() == "leader", nil })
	b, bSessions := start()
	waitUntil(ctx, t, "the second detector to stand by", 120*time.Second, func(context.Context) (bool, error) { return b.role() == "standby", nil })

	secret, err := cs.CoreV1().Secrets("roam-system").Get(ctx, "roam-detector-heartbeat-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the detectors' TLS Secret: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(secret.Data[corev1.TLSCertKey]) {
		t.Fatal("no certificate in the TLS Secret")
	}
	var acks atomic.Int64
	sender, err := agenthb.New(agenthb.Options{Node: "robot-d", Replicas: agenthb.Static(aSessions, bSessions), RootCAs: pool,
		ServerName: "roam-detector.test", Token: func() (string, error) { return token, nil },
		OnAck: func(time.Time) { acks.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = sender.Run(ctx) }()

	direct := func(d *detectorProc) float64 {
		v, _ := strconv.ParseFloat(d.metric(t, `roam_heartbeats_total{source="direct"}`), 64)
		return v
	}
	waitUntil(ctx, t, "direct heartbeats at both replicas and acks", 60*time.Second, func(context.Context) (bool, error) {
		return direct(a) >= 10 && direct(b) >= 10 && acks.Load() >= 10, nil
	})
	if v := b.metric(t, "roam_heartbeat_acks_total"); v != "0" {
		t.Errorf("the standby sent %s acknowledgements", v)
	}

	_ = a.cmd.Process.Kill()
	<-a.done
	waitUntil(ctx, t, "the standby to lead", 60*time.Second, func(context.Context) (bool, error) { return b.role() == "leader", nil })
	n := acks.Load()
	waitUntil(ctx, t, "acknowledgements from the new leader", 60*time.Second, func(context.Context) (bool, error) {
		return acks.Load() >= n+10, nil
	})
	if v := b.metric(t, "roam_heartbeat_sessions"); v != "1" {
		t.Errorf("the new leader holds %s sessions, want the robot's one from before the change", v)
	}
}
