package main

import (
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/roam-dev/roam/detector"
)

func TestFlagDefaults(t *testing.T) {
	o, err := parseFlags(flag.NewFlagSet("roam-detector", flag.ContinueOnError), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !o.leaderElect || o.leNamespace != "roam-system" || o.leName != "roam-detector" || o.metricsAddr != ":8080" {
		t.Errorf("leader election / metrics defaults: %+v", o)
	}
	if o.tick != 200*time.Millisecond || o.core.Threshold != 8 || o.core.BrakeFraction != 0.55 ||
		o.core.Warmup != detector.DefaultWarmup || o.core.EvictionRate != detector.DefaultEvictionRate ||
		o.core.EvictionBurst != detector.DefaultEvictionBurst {
		t.Errorf("detector defaults: tick %v, core %+v", o.tick, o.core)
	}
}

func TestFlagErrors(t *testing.T) {
	for args, want := range map[string]string{
		"--phi-threshold=0":     "--phi-threshold",
		"--brake-fraction=1.5":  "brake fraction",
		"--tick=0s":             "--tick",
		"--eviction-burst=0":    "--eviction-burst",
		"--phi-window=1":        "Window",
		"--phi-min-stddev=-1ms": "MinStdDev",
	} {
		fs := flag.NewFlagSet("roam-detector", flag.ContinueOnError)
		_, err := parseFlags(fs, strings.Fields(args))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one naming %q", args, err, want)
		}
	}
}
