package main

import (
	"flag"
	"os"
	"testing"
	"time"
)

func TestFlagDefaults(t *testing.T) {
	t.Setenv("NODE_NAME", "robot-7")
	o, err := parseFlags(flag.NewFlagSet("roam-agent", flag.ContinueOnError), nil)
	if err != nil {
		t.Fatal(err)
	}
	d := o.daemon
	if d.NodeName != "robot-7" || d.StateFile != "/run/roam/state.yaml" || d.StateListen != "unix:///run/roam/agent.sock" ||
		d.DevicePluginDir != "/var/lib/kubelet/device-plugins" || d.ConfigFile != "/etc/roam-agent/config.yaml" {
		t.Errorf("defaults: %+v", d)
	}
	if d.Heartbeat != nil {
		t.Errorf("direct heartbeats on without a detector named: %+v", d.Heartbeat)
	}
	if l := d.Limits; l.LocationResolution != 1 || l.LocationInterval != 2*time.Second || l.BatteryStep != 5 || l.BatteryInterval != time.Minute || l.Debounce != 200*time.Millisecond {
		t.Errorf("rate defaults: %+v", l)
	}
}

func TestFlagErrors(t *testing.T) {
	for _, args := range [][]string{{"--location-interval=-1s"}, {"--battery-step=-5"}, {"extra"}, {"--no-such-flag"},
		{"--detector-addresses=10.0.0.1:9443", "--detector-ca-file=/nonexistent"},
		{"--detector-addresses=10.0.0.1", "--detector-ca-file=" + os.Args[0]},
		{"--detector-addresses=a:1", "--detector-service=b"},
		{"--detector-service=b", "--heartbeat-interval=0s"}} {
		fs := flag.NewFlagSet("roam-agent", flag.ContinueOnError)
		fs.SetOutput(testWriter{t})
		if _, err := parseFlags(fs, args); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }
