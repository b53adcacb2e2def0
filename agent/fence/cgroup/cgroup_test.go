package cgroup_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/roam-dev/roam/agent/fence/cgroup"
	"github.com/roam-dev/roam/agent/fence/cgroup/cgrouptest"
	"github.com/roam-dev/roam/internal/testutil"
)

var versions = []cgroup.Version{cgroup.V1, cgroup.V2}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// The systemd paths are the kubelet's own test expectations
// (pkg/kubelet/cm/cgroup_manager_linux_test.go).
func TestSystemdPathFollowsKubelet(t *testing.T) {
	for _, tc := range []struct {
		name []string
		want string
	}{
		{[]string{"Burstable"}, "/Burstable.slice"},
		{[]string{"Burstable", "pod-123"}, "/Burstable.slice/Burstable-pod_123.slice"},
		{[]string{"BestEffort", "pod-6c1a4e95-6bb6-11e6-bc26-28d2444e470d"}, "/BestEffort.slice/BestEffort-pod_6c1a4e95_6bb6_11e6_bc26_28d2444e470d.slice"},
		{[]string{"kubepods"}, "/kubepods.slice"},
	} {
		if got := cgroup.SystemdPath(tc.name); got != tc.want {
			t.Errorf("SystemdPath(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
	want := []string{
		"/kubepods/pod1-2", "/kubepods.slice/kubepods-pod1_2.slice",
		"/kubepods/burstable/pod1-2", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1_2.slice",
		"/kubepods/besteffort/pod1-2", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1_2.slice",
	}
	if got := (cgroup.Hierarchy{}).Candidates("1-2"); !slices.Equal(got, want) {
		t.Errorf("Candidates = %q, want %q", got, want)
	}
	got := (cgroup.Hierarchy{Root: []string{"robot"}}).Candidates("u")
	if got[3] != "/robot.slice/robot-kubepods.slice/robot-kubepods-burstable.slice/robot-kubepods-burstable-podu.slice" || got[2] != "/robot/kubepods/burstable/podu" {
		t.Errorf("Candidates with root robot = %q", got)
	}
}

func TestDetect(t *testing.T) {
	const hybrid = `25 1 0:22 / /sys/fs/cgroup rw,relatime shared:9 - tmpfs tmpfs rw,mode=755
30 25 0:27 / /sys/fs/cgroup/freezer rw,relatime shared:14 - cgroup cgroup rw,freezer
31 25 0:28 / /sys/fs/cgroup/unified rw,relatime shared:15 - cgroup2 cgroup2 rw
`
	const unified = "25 1 0:22 / /sys/fs/cgroup rw,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
	const none = "25 1 0:22 / /sys/fs/cgroup rw,relatime shared:9 - tmpfs tmpfs rw,mode=755\n"
	for _, tc := range []struct {
		name, mountinfo string
		want            cgroup.Hierarchy
		kind            cgroup.Kind
	}{
		{"hybrid uses the v1 freezer", hybrid, cgroup.Hierarchy{Version: cgroup.V1, Dir: "/sys/fs/cgroup/freezer"}, ""},
		{"unified", unified, cgroup.Hierarchy{Version: cgroup.V2, Dir: "/sys/fs/cgroup"}, ""},
		{"no freezer", none, cgroup.Hierarchy{}, cgroup.NoFreezer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "mountinfo")
			if err := os.WriteFile(f, []byte(tc.mountinfo), 0o644); err != nil {
				t.Fatal(err)
			}
			h, err := cgroup.Detect("/sys/fs/cgroup/", f)
			if tc.kind != "" {
				if !cgroup.IsKind(err, tc.kind) {
					t.Fatalf("Detect error = %v, want kind %s", err, tc.kind)
				}
				return
			}
			if err != nil || h.Version != tc.want.Version || h.Dir != tc.want.Dir {
				t.Fatalf("Detect = %+v, %v; want %+v", h, err, tc.want)
			}
		})
	}
}

func TestFindEveryLayout(t *testing.T) {
	for _, v := range versions {
		t.Run(v.String(), func(t *testing.T) {
			h := cgrouptest.Hierarchy(t, v)
			for _, driver := range []cgrouptest.Driver{cgrouptest.Cgroupfs, cgrouptest.Systemd} {
				for _, qos := range []string{"", "burstable", "besteffort"} {
					uid := "0d3c1f9e-" + string(driver) + "-" + qos
					dir, _ := cgrouptest.MakePod(t, h, driver, qos, uid)
					p, err := h.Find(uid)
					if err != nil {
						t.Fatalf("Find(%s, %s %q): %v", uid, driver, qos, err)
					}
					if p.Dir != dir {
						t.Errorf("Find(%s) = %s, want %s", uid, p.Dir, dir)
					}
				}
			}
			if _, err := h.Find("not-here"); !cgroup.IsKind(err, cgroup.NoCgroup) {
				t.Errorf("Find of a missing pod: %v, want kind NoCgroup", err)
			}
			if err := h.Check(); err != nil {
				t.Errorf("Check: %v", err)
			}
		})
	}
}

// startPod lays out a burstable pod with two containers, each running a
// counting process, and waits until both count.
func startPod(t *testing.T, h cgroup.Hierarchy, driver cgrouptest.Driver) (*cgroup.Pod, []string, []*cgrouptest.Proc) {
	t.Helper()
	uid := "7f0e2b64-aa55-4c1b-9e1a-" + string(driver)
	_, ctrs := cgrouptest.MakePod(t, h, driver, "burstable", uid, "ctr-a", "ctr-b")
	pod, err := h.Find(uid)
	if err != nil {
		t.Fatal(err)
	}
	procs := []*cgrouptest.Proc{cgrouptest.Start(t, ctrs[0]), cgrouptest.Start(t, ctrs[1])}
	for _, p := range procs {
		p.WaitCounting(t)
	}
	return pod, ctrs, procs
}

// assertStopped checks that none of procs advances its counter over a
// period in which a running one writes about 20 times.
func assertStopped(t *testing.T, procs []*cgrouptest.Proc) []int {
	t.Helper()
	before := make([]int, len(procs))
	for i, p := range procs {
		before[i] = p.Count()
	}
	time.Sleep(200 * time.Millisecond)
	for i, p := range procs {
		if got := p.Count(); got != before[i] {
			t.Fatalf("process %d counted from %d to %d while frozen", p.Cmd.Process.Pid, before[i], got)
		}
	}
	return before
}

func TestFreezeStopsAndThawResumes(t *testing.T) {
	for _, v := range versions {
		for _, driver := range []cgrouptest.Driver{cgrouptest.Cgroupfs, cgrouptest.Systemd} {
			t.Run(v.String()+"/"+string(driver), func(t *testing.T) {
				h := cgrouptest.Hierarchy(t, v)
				pod, _, procs := startPod(t, h, driver)
				if frozen, err := pod.Frozen(); err != nil || frozen {
					t.Fatalf("Frozen before freezing = %v, %v", frozen, err)
				}
				if err := pod.Freeze(ctx(t)); err != nil {
					t.Fatalf("Freeze: %v", err)
				}
				if frozen, err := pod.Frozen(); err != nil || !frozen {
					t.Fatalf("Frozen after Freeze = %v, %v", frozen, err)
				}
				assertStopped(t, procs)
				for _, p := range procs {
					if p.Exited() {
						t.Fatalf("process %d exited while frozen", p.Cmd.Process.Pid)
					}
				}
				if err := pod.Thaw(ctx(t)); err != nil {
					t.Fatalf("Thaw: %v", err)
				}
				for _, p := range procs {
					p.WaitCounting(t)
				}
			})
		}
	}
}

func TestKillWhileFrozen(t *testing.T) {
	for _, v := range versions {
		t.Run(v.String(), func(t *testing.T) {
			h := cgrouptest.Hierarchy(t, v)
			pod, _, procs := startPod(t, h, cgrouptest.Systemd)
			if err := pod.Freeze(ctx(t)); err != nil {
				t.Fatalf("Freeze: %v", err)
			}
			atFreeze := assertStopped(t, procs)
			if err := pod.Kill(ctx(t)); err != nil {
				t.Fatalf("Kill: %v", err)
			}
			for i, p := range procs {
				select {
				case <-p.Done():
				case <-time.After(20 * time.Second):
					t.Fatalf("process %d not reaped after Kill", p.Cmd.Process.Pid)
				}
				if got := p.Count(); got != atFreeze[i] {
					t.Errorf("process %d ran after the freeze: counter %d, %d when frozen", p.Cmd.Process.Pid, got, atFreeze[i])
				}
				if ws, ok := p.Cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
					t.Errorf("process %d ended with %v, want SIGKILL", p.Cmd.Process.Pid, p.Cmd.ProcessState)
				}
			}
			if pids, err := pod.Procs(); err != nil || len(pids) != 0 {
				t.Errorf("Procs after Kill = %v, %v; want none", pids, err)
			}
			if frozen, err := pod.Frozen(); err != nil || !frozen {
				t.Errorf("Frozen after Kill = %v, %v; want the cgroup left frozen", frozen, err)
			}
		})
	}
}

// A process started into a frozen pod cgroup — what the kubelet's restart of
// a container does — does not run until the pod is thawed.
func TestProcessStartedIntoFrozenPodStaysFrozen(t *testing.T) {
	for _, v := range versions {
		t.Run(v.String(), func(t *testing.T) {
			h := cgrouptest.Hierarchy(t, v)
			pod, ctrs, _ := startPod(t, h, cgrouptest.Cgroupfs)
			if err := pod.Freeze(ctx(t)); err != nil {
				t.Fatalf("Freeze: %v", err)
			}
			late := cgrouptest.Start(t, ctrs[0])
			cgrouptest.Eventually(t, "the late process joining the pod cgroup", func() bool {
				pids, _ := pod.Procs()
				return slices.Contains(pids, late.Cmd.Process.Pid)
			})
			time.Sleep(200 * time.Millisecond)
			if n := late.Count(); n != -1 {
				t.Fatalf("a process started into the frozen pod counted to %d", n)
			}
			if late.Exited() {
				t.Fatal("the late process exited")
			}
			if err := pod.Thaw(ctx(t)); err != nil {
				t.Fatalf("Thaw: %v", err)
			}
			late.WaitCounting(t)
		})
	}
}

func TestCannotFence(t *testing.T) {
	testutil.RequireRoot(t)
	// No kubelet cgroups at all.
	empty := cgroup.Hierarchy{Version: cgroup.V2, Dir: t.TempDir()}
	if err := empty.Check(); !cgroup.IsKind(err, cgroup.NoCgroup) {
		t.Errorf("Check without kubepods: %v, want kind NoCgroup", err)
	}
	// A directory tree that looks like the kubelet's but is no cgroup: no freezer.
	fake := cgroup.Hierarchy{Version: cgroup.V2, Dir: t.TempDir()}
	if err := os.MkdirAll(filepath.Join(fake.Dir, "kubepods", "podx"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := fake.Check(); !cgroup.IsKind(err, cgroup.NoFreezer) {
		t.Errorf("Check without a freezer: %v, want kind NoFreezer", err)
	}
	p, err := fake.Find("x")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Freeze(ctx(t)); !cgroup.IsKind(err, cgroup.NoFreezer) {
		t.Errorf("Freeze without a freezer: %v, want kind NoFreezer", err)
	}
	// A read-only filesystem.
	ro := t.TempDir()
	if err := syscall.Mount("tmpfs", ro, "tmpfs", 0, ""); err != nil {
		testutil.SkipOrFailInCI(t, "cannot mount a tmpfs: "+err.Error())
	}
	t.Cleanup(func() { _ = syscall.Unmount(ro, 0) })
	if err := os.MkdirAll(filepath.Join(ro, "kubepods"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ro, "kubepods", "freezer.state"), []byte("THAWED\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", ro, "tmpfs", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	if err := (cgroup.Hierarchy{Version: cgroup.V1, Dir: ro}).Check(); !cgroup.IsKind(err, cgroup.NotWritable) {
		t.Errorf("Check on a read-only filesystem: %v, want kind NotWritable", err)
	}
}

func TestParseRoot(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		bad  bool
	}{
		{in: "/"}, {in: ""},
		{in: "/robot/pods", want: []string{"robot", "pods"}},
		{in: "/robot.slice/robot-pods.slice", want: []string{"robot", "pods"}},
		{in: "/my_app.slice", want: []string{"my-app"}},
		{in: "/a.slice/b.slice", bad: true},
		{in: "robot", bad: true},
	} {
		got, err := cgroup.ParseRoot(tc.in)
		if (err != nil) != tc.bad || !slices.Equal(got, tc.want) {
			t.Errorf("ParseRoot(%q) = %q, %v", tc.in, got, err)
		}
	}
}
