package config

import (
	"errors"
	"strings"
	"testing"
)

func TestParseExample(t *testing.T) {
	cfg, errs, err := Parse(Example)
	if err != nil || len(errs) > 0 {
		t.Fatalf("example: %v %v", err, errs)
	}
	if len(cfg.DeviceClasses) != 3 || cfg.DeviceClasses[2].Virtual.ContainerPath != "/run/ros/bus.sock" {
		t.Errorf("example parsed to %+v", cfg)
	}
	if got := cfg.DeviceClasses[2].EnvName(); got != "ROAM_DEVICE_ROS_BUS" {
		t.Errorf("env name %q", got)
	}
}

func TestClassErrorsNameClassAndField(t *testing.T) {
	doc := `
deviceClasses:
  - {name: good, resource: roam.dev/good, devices: /dev/video*}
  - {name: Bad_Name, resource: roam.dev/x, devices: /dev/x*}
  - {name: nores, devices: /dev/x*}
  - {name: k8s, resource: kubernetes.io/x, devices: /dev/x*}
  - {name: rel, resource: roam.dev/rel, devices: dev/x*}
  - {name: both, resource: roam.dev/both, devices: /dev/x, virtual: {hostPath: /x, shares: 1}}
  - {name: none, resource: roam.dev/none}
  - {name: shares, resource: roam.dev/s, virtual: {hostPath: /x, shares: 0}}
  - {name: hp, resource: roam.dev/hp, virtual: {hostPath: x, shares: 1}}
  - {name: typo, resource: roam.dev/typo, device: /dev/x}
  - {name: dup, resource: roam.dev/good, devices: /dev/y*}
  - {name: good, resource: roam.dev/other, devices: /dev/y*}
  - {name: glob, resource: roam.dev/glob, devices: "/dev/[x"}
`
	cfg, errs, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.DeviceClasses) != 1 || cfg.DeviceClasses[0].Name != "good" {
		t.Errorf("valid classes %+v, want only good", cfg.DeviceClasses)
	}
	want := []string{"Bad_Name/name", "nores/resource", "k8s/resource", "rel/devices", "both/devices", "none/devices",
		"shares/virtual.shares", "hp/virtual.hostPath", "typo/device", "dup/resource", "good/name", "glob/devices"}
	if len(errs) != len(want) {
		t.Fatalf("errors %v, want %d", errs, len(want))
	}
	for i, e := range errs {
		var ce *ClassError
		if !errors.As(e, &ce) || ce.Class+"/"+ce.Field != want[i] || !strings.Contains(e.Error(), "device class "+ce.Class) {
			t.Errorf("error %d: %v, want class/field %s", i, e, want[i])
		}
	}
}

func TestMalformedFile(t *testing.T) {
	if _, _, err := Parse([]byte("deviceClasses: {")); err == nil {
		t.Error("malformed file accepted")
	}
	if _, _, err := Parse([]byte("devices: []")); err == nil {
		t.Error("unknown top-level field accepted")
	}
}
