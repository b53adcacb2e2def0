package deviceplugin

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	_ "unsafe" // go:linkname

	cadvisorapi "github.com/google/cadvisor/info/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/kubernetes/pkg/kubelet/cm/containermap"
	"k8s.io/kubernetes/pkg/kubelet/cm/devicemanager"
	"k8s.io/kubernetes/pkg/kubelet/cm/topologymanager"

	"github.com/roam-dev/roam/agent/config"
)

// newManagerImpl is the kubelet's own device manager constructor with its
// socket path as a parameter (the exported NewManagerImpl hard-codes
// /var/lib/kubelet/device-plugins/kubelet.sock). The test runs the real
// kubelet device manager, checkpoint and registration server, in a
// temporary directory.
//
//go:linkname newManagerImpl k8s.io/kubernetes/pkg/kubelet/cm/devicemanager.newManagerImpl
func newManagerImpl(socketPath string, topology []cadvisorapi.Node, topologyAffinityStore topologymanager.Store) (*devicemanager.ManagerImpl, error)

type sourcesReady struct{}

func (sourcesReady) AddSource(string) {}
func (sourcesReady) AllReady() bool   { return true }

// kubelet is the kubelet's device manager, started as the kubelet starts it.
type kubelet struct {
	*devicemanager.ManagerImpl
	mu   sync.Mutex
	pods []*corev1.Pod
}

func startKubelet(t *testing.T, dir string) *kubelet {
	t.Helper()
	m, err := newManagerImpl(filepath.Join(dir, "kubelet.sock"), nil, topologymanager.NewFakeManager())
	if err != nil {
		t.Fatal(err)
	}
	k := &kubelet{ManagerImpl: m}
	active := func() []*corev1.Pod {
		k.mu.Lock()
		defer k.mu.Unlock()
		return slices.Clone(k.pods)
	}
	if err := m.Start(active, sourcesReady{}, containermap.NewContainerMap(), sets.New[string]()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Stop() })
	return k
}

// waitCapacity waits until the kubelet reports capacity and allocatable
// for resource (as it would write them into the Node status).
func waitCapacity(t *testing.T, k *kubelet, res string, capacity, allocatable int64) {
	t.Helper()
	var c, a corev1.ResourceList
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 60*time.Second, true, func(context.Context) (bool, error) {
		c, a, _ = k.GetCapacity()
		cq, ok1 := c[corev1.ResourceName(res)]
		aq, ok2 := a[corev1.ResourceName(res)]
		return ok1 && ok2 && cq.Value() == capacity && aq.Value() == allocatable, nil
	})
	if err != nil {
		t.Fatalf("kubelet %s: want capacity %d allocatable %d; got capacity %v allocatable %v", res, capacity, allocatable, c, a)
	}
}

func touch(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestDevicePluginAgainstKubeletDeviceManager(t *testing.T) {
	root := t.TempDir()
	pluginDir := filepath.Join(root, "device-plugins")
	dev := filepath.Join(root, "dev")
	if err := os.MkdirAll(filepath.Join(dev, "serial", "by-id"), 0o755); err != nil {
		t.Fatal(err)
	}
	touch(t, filepath.Join(dev, "video0"))
	touch(t, filepath.Join(dev, "video1"))
	touch(t, filepath.Join(dev, "ttyUSB0"))
	if err := os.Symlink(filepath.Join(dev, "ttyUSB0"), filepath.Join(dev, "serial", "by-id", "usb-acme-lidar-if00")); err != nil {
		t.Fatal(err)
	}
	bus := filepath.Join(root, "ros", "bus.sock")
	if err := os.MkdirAll(filepath.Dir(bus), 0o755); err != nil {
		t.Fatal(err)
	}
	touch(t, bus)

	cfg, errs, err := config.Parse([]byte(strings.NewReplacer("DEV", dev, "BUS", bus).Replace(`
deviceClasses:
  - name: camera
    resource: roam.dev/camera
    devices: DEV/video*
  - name: lidar
    resource: roam.dev/lidar
    devices: DEV/serial/by-id/*lidar*
  - name: broken
    resource: camera
    devices: DEV/video*
  - name: ros-bus
    resource: roam.dev/ros-bus
    virtual: {hostPath: BUS, containerPath: /run/ros/bus.sock, shares: 3}
`)))
	if err != nil {
		t.Fatal(err)
	}
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "device class broken: field resource") {
		t.Fatalf("config errors %v, want one naming class broken and field resource", errs)
	}

	k := startKubelet(t, pluginDir)
	var healthMu sync.Mutex
	health := map[string][2]int{}
	m := New(cfg.DeviceClasses, Options{PluginDir: pluginDir, Rescan: 200 * time.Millisecond,
		OnHealth: func(c string, h, u int) { healthMu.Lock(); health[c] = [2]int{h, u}; healthMu.Unlock() }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	// Capacity appears.
	waitCapacity(t, k, "roam.dev/camera", 2, 2)
	waitCapacity(t, k, "roam.dev/lidar", 1, 1)
	waitCapacity(t, k, "roam.dev/ros-bus", 3, 3)

	// An unplugged camera turns Unhealthy: allocatable drops.
	if err := os.Remove(filepath.Join(dev, "video1")); err != nil {
		t.Fatal(err)
	}
	waitCapacity(t, k, "roam.dev/camera", 2, 1)
	healthMu.Lock()
	if health["camera"] != [2]int{1, 1} {
		t.Errorf("health callback for camera: %v, want 1 healthy 1 unhealthy", health["camera"])
	}
	healthMu.Unlock()

	// Allocate returns what the container needs.
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "default", UID: "pod-1"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{
			"roam.dev/camera": resource.MustParse("1"), "roam.dev/lidar": resource.MustParse("1"), "roam.dev/ros-bus": resource.MustParse("1"),
		}}}}}}
	k.mu.Lock()
	k.pods = []*corev1.Pod{pod}
	k.mu.Unlock()
	c := &pod.Spec.Containers[0]
	if err := k.Allocate(pod, c); err != nil {
		t.Fatalf("kubelet Allocate: %v", err)
	}
	opts, err := k.GetDeviceRunContainerOptions(pod, c)
	if err != nil {
		t.Fatal(err)
	}
	var devs []string
	for _, d := range opts.Devices {
		devs = append(devs, d.PathOnHost+"->"+d.PathInContainer+":"+d.Permissions)
	}
	slices.Sort(devs)
	lidarLink := filepath.Join(dev, "serial", "by-id", "usb-acme-lidar-if00")
	want := []string{filepath.Join(dev, "ttyUSB0") + "->" + lidarLink + ":rw", filepath.Join(dev, "video0") + "->" + filepath.Join(dev, "video0") + ":rw"}
	if !slices.Equal(devs, want) {
		t.Errorf("devices %v, want %v (the healthy camera and the lidar's node)", devs, want)
	}
	if len(opts.Mounts) != 1 || opts.Mounts[0].HostPath != bus || opts.Mounts[0].ContainerPath != "/run/ros/bus.sock" {
		t.Errorf("mounts %+v, want the bus socket", opts.Mounts)
	}
	envs := map[string]string{}
	for _, e := range opts.Envs {
		envs[e.Name] = e.Value
	}
	for name, v := range map[string]string{"ROAM_DEVICE_CAMERA": filepath.Join(dev, "video0"), "ROAM_DEVICE_LIDAR": lidarLink, "ROAM_DEVICE_ROS_BUS": "/run/ros/bus.sock"} {
		if envs[name] != v {
			t.Errorf("env %s = %q, want %q (all: %v)", name, envs[name], v, envs)
		}
	}
	waitCapacity(t, k, "roam.dev/ros-bus", 3, 3) // shares are counted, not consumed, by capacity

	// A new camera is found.
	touch(t, filepath.Join(dev, "video2"))
	waitCapacity(t, k, "roam.dev/camera", 3, 2)

	// The kubelet restarts: it removes every plugin socket and creates
	// its own again; the plugins register again.
	if err := k.Stop(); err != nil {
		t.Fatal(err)
	}
	k2 := startKubelet(t, pluginDir)
	waitCapacity(t, k2, "roam.dev/camera", 3, 2)
	waitCapacity(t, k2, "roam.dev/ros-bus", 3, 3)
	// The devices allocated before the restart are still the pod's
	// (read back from the kubelet's checkpoint).
	if got := k2.GetDevices("pod-1", "c"); len(got["roam.dev/camera"]) != 1 {
		t.Errorf("after the kubelet restart, the pod's devices are %v", got)
	}
}
