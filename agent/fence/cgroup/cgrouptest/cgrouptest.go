// Package cgrouptest lays out kubelet-style pod cgroups in a test-owned
// part of the host's real cgroup hierarchies and runs real processes in
// them. Everything it creates lives under a unique parent directory and is
// removed when the test ends; the host's own cgroups are never touched.
package cgrouptest

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/roam-dev/roam/agent/fence/cgroup"
	"github.com/roam-dev/roam/internal/testutil"
)

// Hierarchy returns a hierarchy of version v whose top is a fresh directory
// under the host's real mount of that version, removed (with every process
// in it killed) when the test ends. It needs root; it skips without, and
// fails in CI.
func Hierarchy(t testing.TB, v cgroup.Version) cgroup.Hierarchy {
	t.Helper()
	testutil.RequireRoot(t)
	mnt, err := cgroup.Mounted("/proc/self/mountinfo", v)
	if err != nil {
		testutil.SkipOrFailInCI(t, err.Error())
	}
	dir, err := os.MkdirTemp(mnt, "roam-test-")
	if err != nil {
		t.Fatalf("creating a test cgroup under %s: %v", mnt, err)
	}
	h := cgroup.Hierarchy{Version: v, Dir: dir}
	t.Cleanup(func() { remove(t, h) })
	return h
}

// remove kills every process under h.Dir and removes its cgroups, deepest
// first.
func remove(t testing.TB, h cgroup.Hierarchy) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Pod(h.Dir).Kill(ctx); err != nil {
		t.Errorf("cleaning up %s: %v", h.Dir, err)
	}
	var dirs []string
	_ = filepath.WalkDir(h.Dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, path)
		}
		return nil
	})
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for _, d := range dirs {
		if err := os.Remove(d); err != nil {
			t.Errorf("cleaning up: %v", err)
		}
	}
}

// Driver is a kubelet cgroup driver.
type Driver string

const (
	Cgroupfs Driver = "cgroupfs"
	Systemd  Driver = "systemd"
)

// MakePod creates the cgroup the kubelet would create for a pod with uid in
// the QoS class qos ("" for Guaranteed, "burstable", "besteffort") under
// driver, and a child cgroup per container name. It returns the pod cgroup's
// directory and the containers' directories.
func MakePod(t testing.TB, h cgroup.Hierarchy, driver Driver, qos, uid string, containers ...string) (string, []string) {
	t.Helper()
	name := append(append([]string{}, h.Root...), "kubepods")
	if qos != "" {
		name = append(name, qos)
	}
	name = append(name, "pod"+uid)
	rel := cgroup.CgroupfsPath(name)
	if driver == Systemd {
		rel = cgroup.SystemdPath(name)
	}
	dir := filepath.Join(h.Dir, rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("creating pod cgroup: %v", err)
	}
	var ctrs []string
	for _, c := range containers {
		cd := filepath.Join(dir, c)
		if err := os.Mkdir(cd, 0o755); err != nil {
			t.Fatalf("creating container cgroup: %v", err)
		}
		ctrs = append(ctrs, cd)
	}
	return dir, ctrs
}

// Proc is a process that moves itself into a cgroup, as a container
// runtime's init does before it starts the container's program, and then
// counts: it writes an increasing number to a file about every 10 ms, so a
// test sees whether it runs.
type Proc struct {
	Cmd     *exec.Cmd
	counter string
	done    chan struct{}
}

// Start starts a Proc that joins the cgroup at dir. It is killed when the
// test ends if it still runs.
func Start(t testing.TB, dir string) *Proc {
	t.Helper()
	counter := filepath.Join(t.TempDir(), "counter")
	script := `echo $$ > "$1" && i=0 && while :; do i=$((i+1)); echo $i > "$2.tmp"; mv "$2.tmp" "$2"; sleep 0.01; done`
	cmd := exec.Command("sh", "-c", script, "sh", filepath.Join(dir, "cgroup.procs"), counter)
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting a process: %v", err)
	}
	p := &Proc{Cmd: cmd, counter: counter, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
	})
	return p
}

// Count is the last number the process wrote, -1 before the first.
func (p *Proc) Count() int {
	b, err := os.ReadFile(p.counter)
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return -1
	}
	return n
}

// Exited reports whether the process has exited and been reaped.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Done is closed once the process has exited and been reaped.
func (p *Proc) Done() <-chan struct{} { return p.done }

// WaitCounting waits until the process's counter advances.
func (p *Proc) WaitCounting(t testing.TB) {
	t.Helper()
	start := p.Count()
	Eventually(t, fmt.Sprintf("process %d counting past %d", p.Cmd.Process.Pid, start), func() bool { return p.Count() > start })
}

// Eventually waits up to 20 s for cond, failing the test with what otherwise.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
