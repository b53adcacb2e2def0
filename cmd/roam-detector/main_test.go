package main

import (
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/roam-dev/roam/detector"
	"github.com/roam-dev/roam/detector/evict"
)

func TestFlagDefaults(t *testing.T) {
	o, err := parseFlags(flag.NewFlagSet("roam-detector", flag.ContinueOnError), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !o.leaderElect || o.leNamespace != "roam-system" || o.leName != "roam-detector" || o.metricsAddr != ":8080" {
		t.Errorf("leader election / metrics defaults: %+v", o)
	}
	if o.tick != 200*time.Millisecond || o.core != detector.DefaultCoreConfig() || o.limits != evict.DefaultLimits() ||
		o.probe != detector.DefaultProbeConfig() {
		t.Errorf("detector defaults: tick %v, core %+v, limits %+v, probe %+v", o.tick, o.core, o.limits, o.probe)
	}
}

// Every flag whose zero has a meaning takes 0 as that meaning, not as
// "the default".
func TestFlagZeroIsZero(t *testing.T) {
	o, err := parseFlags(flag.NewFlagSet("roam-detector", flag.ContinueOnError), []string{
		"--phi-acceptable-pause=0", "--warmup=0", "--eviction-confirm=0", "--eviction-delay=0", "--apiserver-probe-interval=0"})
	if err != nil {
		t.Fatal(err)
	}
	if o.core.Phi.AcceptablePause != 0 || o.core.Warmup != 0 || o.core.EvictionConfirm != 0 || o.core.EvictionDelay != 0 {
		t.Errorf("zeros not honoured: %+v", o.core)
	}
	if o.probe.Interval != 0 {
		t.Errorf("--apiserver-probe-interval=0 gave %v, want 0 (no probe)", o.probe.Interval)
	}
	// And they reach the detector as zeros: no pause means phi 8 is
	// reached 0.5 s sooner than with the default pause.
	core, err := detector.NewCore(o.core, time.Time{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := core.Config().Phi.AcceptablePause; got != 0 {
		t.Errorf("core acceptable pause = %v", got)
	}
}

func TestFlagErrors(t *testing.T) {
	for args, want := range map[string]string{
		"--phi-threshold=0":                                    "--phi-threshold=0",
		"--phi-threshold=-3":                                   "--phi-threshold=-3",
		"--brake-fraction=1.5":                                 "--brake-fraction",
		"--brake-fraction=0":                                   "--brake-fraction",
		"--brake-min-nodes=0":                                  "--brake-min-nodes",
		"--tick=0s":                                            "--tick",
		"--eviction-node-burst=0":                              "--eviction-node-burst",
		"--eviction-node-rate=0":                               "--eviction-node-rate",
		"--eviction-pod-rate=-1":                               "--eviction-pod-rate",
		"--eviction-pod-burst=0":                               "--eviction-pod-burst",
		"--phi-window=1":                                       "--phi-window",
		"--phi-min-stddev=-1ms":                                "--phi-min-stddev",
		"--phi-min-stddev=0":                                   "--phi-min-stddev",
		"--phi-acceptable-pause=-1s":                           "--phi-acceptable-pause",
		"--warmup=-1s":                                         "--warmup",
		"--eviction-confirm=-1s":                               "--eviction-confirm",
		"--eviction-delay=-5ms":                                "--eviction-delay",
		"--recover-heartbeats=0":                               "--recover-heartbeats",
		"--kube-api-qps=0":                                     "--kube-api-qps",
		"--leader-elect-renew-deadline=20s":                    "--leader-elect-renew-deadline",
		"--leader-elect-lease-duration=-15s":                   "--leader-elect-lease-duration",
		"--false-eviction-budget=0":                            "--false-eviction-budget=0",
		"--false-eviction-budget=-1":                           "--false-eviction-budget=-1",
		"--eviction-timeout-floor=0s":                          "--eviction-timeout-floor",
		"--eviction-timeout-floor=20s":                         "--eviction-timeout-ceiling=15s: must be at least --eviction-timeout-floor=20s",
		"--eviction-timeout-ceiling=1s":                        "--eviction-timeout-ceiling=1s",
		"--silence-half-life=5m":                               "--silence-half-life=5m0s",
		"--heartbeat-session-ttl=0s":                           "--heartbeat-session-ttl",
		"--heartbeat-tls-cert-file=c.pem":                      "--heartbeat-tls-key-file",
		"--heartbeat-listen=:9470 --heartbeat-session-listen=": "--heartbeat-session-listen",
		"--apiserver-probe-interval=-1s":                       "--apiserver-probe-interval",
		"--apiserver-probe-timeout=0":                          "--apiserver-probe-timeout",
		"--apiserver-probe-timeout=-2s":                        "--apiserver-probe-timeout",
	} {
		fs := flag.NewFlagSet("roam-detector", flag.ContinueOnError)
		_, err := parseFlags(fs, strings.Fields(args))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one naming %q", args, err, want)
		}
	}
}
