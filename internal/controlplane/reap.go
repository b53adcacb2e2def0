package controlplane

import (
	"bytes"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"k8s.io/klog/v2"
)

// Child processes are recorded in a file per control plane so that, when a
// test binary is killed outright (go test's timeout, SIGKILL) and cannot run
// Stop, the next Start reaps what it left behind.

var controlPlaneBinaries = map[string]bool{"etcd": true, "kube-apiserver": true, "kube-controller-manager": true}

func recordDir() string { return filepath.Join(os.TempDir(), "roam-controlplane.d") }

func (cp *ControlPlane) recordFile() string {
	return filepath.Join(recordDir(), fmt.Sprintf("%d-%s", os.Getpid(), filepath.Base(cp.Dir)))
}

// recordChildren writes the PIDs of this process's control-plane children
// and the directories to remove if they are orphaned.
func recordChildren(cp *ControlPlane) {
	if err := os.MkdirAll(recordDir(), 0o700); err != nil {
		return
	}
	var b strings.Builder
	for _, pid := range childPIDs(os.Getpid()) {
		fmt.Fprintf(&b, "pid %d\n", pid)
	}
	dirs := []string{cp.Dir}
	if cp.env != nil {
		if etcd := cp.env.ControlPlane.Etcd; etcd != nil {
			dirs = append(dirs, etcd.DataDir)
		}
		if api := cp.env.ControlPlane.APIServer; api != nil {
			dirs = append(dirs, api.CertDir)
		}
	}
	for _, d := range dirs {
		if d != "" {
			fmt.Fprintf(&b, "dir %s\n", d)
		}
	}
	_ = os.WriteFile(cp.recordFile(), []byte(b.String()), 0o600)
}

func forgetChildren(cp *ControlPlane) { _ = os.Remove(cp.recordFile()) }

// reapStale kills the control-plane processes and removes the directories
// recorded by processes that no longer exist.
func reapStale() {
	entries, err := os.ReadDir(recordDir())
	if err != nil {
		return
	}
	for _, e := range entries {
		owner, err := strconv.Atoi(strings.SplitN(e.Name(), "-", 2)[0])
		if err != nil || alive(owner) {
			continue
		}
		path := filepath.Join(recordDir(), e.Name())
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			kind, value, _ := strings.Cut(line, " ")
			switch kind {
			case "pid":
				pid, err := strconv.Atoi(value)
				if err == nil && controlPlaneBinaries[processName(pid)] {
					klog.InfoS("Reaping control-plane process left by a dead test run", "pid", pid, "owner", owner)
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			case "dir":
				if strings.HasPrefix(value, os.TempDir()) {
					_ = os.RemoveAll(value)
				}
			}
		}
		_ = os.Remove(path)
	}
}

// watchSignals stops the control plane and exits when the process is
// interrupted, so Ctrl-C never leaves etcd or kube-apiserver running (envtest
// starts them in their own process group, out of reach of the terminal).
// With graceful set, the first interrupt is the caller's and the second
// one stops and exits.
func watchSignals(cp *ControlPlane, graceful bool) (unwatch func()) {
	ch := make(chan os.Signal, 2)
	done := make(chan struct{})
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		for first := true; ; first = false {
			select {
			case sig := <-ch:
				if graceful && first {
					klog.InfoS("Interrupted: finishing up (interrupt again to stop at once)", "signal", sig.String())
					continue
				}
				klog.InfoS("Interrupted: stopping the control plane", "signal", sig.String())
				_ = cp.Stop()
				os.Exit(130)
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
	}
}

// childPIDs lists the live control-plane processes whose parent is ppid.
func childPIDs(ppid int) []int {
	var pids []int
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		// /proc/PID/stat: pid (comm) state ppid ...; comm may contain spaces.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) < 2 || fields[0] == "Z" {
			continue
		}
		if parent, _ := strconv.Atoi(fields[1]); parent == ppid && controlPlaneBinaries[processName(pid)] {
			pids = append(pids, pid)
		}
	}
	return pids
}

// processName is the base name of pid's executable, or "" if it is gone.
func processName(pid int) string {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return ""
	}
	return filepath.Base(strings.TrimSuffix(exe, " (deleted)"))
}

func alive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}

// ChildPIDs lists this process's running etcd, kube-apiserver and
// kube-controller-manager children.
func ChildPIDs() []int { return childPIDs(os.Getpid()) }
