// Package cgroup finds a pod's cgroup the way the kubelet lays it out and
// freezes, thaws and kills it. Freezing is how roam-agent fences a robot it
// may have lost: a frozen container has not exited, so the kubelet does not
// restart it, and it resumes exactly where it stopped when it is thawed.
//
// It works on cgroup v2 (cgroup.freeze, cgroup.kill) and on the cgroup v1
// freezer hierarchy, for both of the kubelet's cgroup drivers (cgroupfs and
// systemd) and all three QoS classes. It needs write access to the host's
// cgroup filesystem; when that is missing it says so with an *Error whose
// Kind names the reason, so a caller never claims a fence it cannot make.
package cgroup

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Version is the cgroup version of a hierarchy.
type Version int

const (
	// V1 is the cgroup v1 freezer hierarchy.
	V1 Version = 1
	// V2 is the unified cgroup v2 hierarchy.
	V2 Version = 2
)

func (v Version) String() string { return "v" + strconv.Itoa(int(v)) }

// Kind says why a pod cannot be fenced.
type Kind string

const (
	// NoCgroup: no cgroup exists for the pod (or it vanished): the pod is
	// not running here, or the kubelet uses a layout this package does not
	// know.
	NoCgroup Kind = "NoCgroup"
	// NoFreezer: the hierarchy has no freezer (no v1 freezer mounted, or a
	// kernel without cgroup.freeze).
	NoFreezer Kind = "NoFreezer"
	// NotWritable: the cgroup filesystem is read-only or the agent lacks the
	// permission to write it.
	NotWritable Kind = "NotWritable"
	// Timeout: the kernel did not report the requested state in time.
	Timeout Kind = "Timeout"
)

// Error is a fencing failure with its reason.
type Error struct {
	Kind Kind
	// Path is the file or directory involved.
	Path string
	Err  error
}

func (e *Error) Error() string {
	return fmt.Sprintf("cannot fence (%s) at %s: %v", e.Kind, e.Path, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// IsKind reports whether err is an *Error of kind k.
func IsKind(err error, k Kind) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind == k
}

// classify turns a file error into an *Error of the fitting kind.
func classify(path string, err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &Error{Kind: NoCgroup, Path: path, Err: err}
	case errors.Is(err, syscall.EROFS), errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EPERM):
		return &Error{Kind: NotWritable, Path: path, Err: err}
	}
	return fmt.Errorf("cgroup %s: %w", path, err)
}

// Hierarchy is the cgroup hierarchy in which the kubelet's pod cgroups can
// be frozen.
type Hierarchy struct {
	Version Version
	// Dir is the directory of the hierarchy's top: the cgroup2 mount point
	// for V2, the freezer hierarchy's mount point for V1.
	Dir string
	// Root is the kubelet's --cgroup-root as name components (["robot"] for
	// "/robot" with the cgroupfs driver or "/robot.slice" with systemd);
	// empty for the default "/".
	Root []string
	// Poll is how often Freeze, Thaw and Kill re-read the kernel's state
	// while waiting for it (default 2ms).
	Poll time.Duration
}

// Detect finds the hierarchy the kubelet's container runtime uses under
// base (normally /sys/fs/cgroup), reading the mount table from mountinfo
// (normally /proc/self/mountinfo): cgroup v2 when base itself is a cgroup2
// mount (the runtime's own rule), else the cgroup v1 freezer hierarchy.
func Detect(base, mountinfo string) (Hierarchy, error) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return Hierarchy{}, fmt.Errorf("reading mounts: %w", err)
	}
	defer func() { _ = f.Close() }()
	mounts, err := parseMountinfo(f)
	if err != nil {
		return Hierarchy{}, fmt.Errorf("reading mounts from %s: %w", mountinfo, err)
	}
	base = filepath.Clean(base)
	freezer := ""
	for _, m := range mounts {
		if m.point == base && m.fstype == "cgroup2" {
			return Hierarchy{Version: V2, Dir: base}, nil
		}
		if m.fstype == "cgroup" && strings.HasPrefix(m.point, base+"/") && hasOption(m.superOpts, "freezer") {
			freezer = m.point
		}
	}
	if freezer == "" {
		return Hierarchy{}, &Error{Kind: NoFreezer, Path: base, Err: errors.New("neither a cgroup2 mount nor a cgroup v1 freezer mount")}
	}
	return Hierarchy{Version: V1, Dir: freezer}, nil
}

// Mounted returns where the hierarchy of version v is mounted according to
// mountinfo: the (first) cgroup2 mount for V2, the cgroup v1 freezer mount
// for V1. On a host with both, Detect decides which one the kubelet uses.
func Mounted(mountinfo string, v Version) (string, error) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return "", fmt.Errorf("reading mounts: %w", err)
	}
	defer func() { _ = f.Close() }()
	mounts, err := parseMountinfo(f)
	if err != nil {
		return "", fmt.Errorf("reading mounts from %s: %w", mountinfo, err)
	}
	for _, m := range mounts {
		if v == V2 && m.fstype == "cgroup2" || v == V1 && m.fstype == "cgroup" && hasOption(m.superOpts, "freezer") {
			return m.point, nil
		}
	}
	return "", &Error{Kind: NoFreezer, Path: mountinfo, Err: fmt.Errorf("no cgroup %s freezer mounted", v)}
}

type mount struct{ point, fstype, superOpts string }

// parseMountinfo reads the fields of proc(5) mountinfo it needs.
func parseMountinfo(r io.Reader) ([]mount, error) {
	var out []mount
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || len(fields) < sep+4 {
			continue
		}
		out = append(out, mount{point: unescapeMount(fields[4]), fstype: fields[sep+1], superOpts: fields[sep+3]})
	}
	return out, sc.Err()
}

// unescapeMount undoes the octal escapes of mountinfo (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func hasOption(opts, want string) bool {
	for _, o := range strings.Split(opts, ",") {
		if o == want {
			return true
		}
	}
	return false
}

// QoS classes as the kubelet names their cgroups ("" is Guaranteed, whose
// pods sit directly under kubepods).
var qosClasses = []string{"", "burstable", "besteffort"}

// Candidates are the directories, relative to the hierarchy's top, where the
// kubelet puts the cgroup of the pod with this UID: both drivers, all QoS
// classes. They follow the kubelet's CgroupName.ToCgroupfs and ToSystemd.
func (h Hierarchy) Candidates(uid string) []string {
	var out []string
	for _, qos := range qosClasses {
		name := append([]string{}, h.Root...)
		name = append(name, "kubepods")
		if qos != "" {
			name = append(name, qos)
		}
		name = append(name, "pod"+uid)
		out = append(out, CgroupfsPath(name), SystemdPath(name))
	}
	return out
}

// CgroupfsPath is the kubelet's cgroupfs-driver path of a cgroup name.
func CgroupfsPath(name []string) string { return "/" + strings.Join(name, "/") }

// SystemdPath is the kubelet's systemd-driver path of a cgroup name: every
// prefix of the name becomes a slice, with "-" in a component escaped as
// "_" ([kubepods burstable pod1-2] →
// /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1_2.slice).
func SystemdPath(name []string) string {
	parts := make([]string, len(name))
	var b strings.Builder
	for i, p := range name {
		parts[i] = strings.ReplaceAll(p, "-", "_")
		b.WriteString("/" + strings.Join(parts[:i+1], "-") + ".slice")
	}
	return b.String()
}

// ParseRoot turns the kubelet's --cgroup-root into name components: "/"
// is none, "/a/b" (cgroupfs driver) is [a b], and a systemd slice path
// "/a.slice/a-b.slice" is [a b] (its last slice, split at "-", with "_"
// standing for "-" as the kubelet escapes it).
func ParseRoot(root string) ([]string, error) {
	if root == "" || root == "/" {
		return nil, nil
	}
	if !strings.HasPrefix(root, "/") {
		return nil, fmt.Errorf("%q is not an absolute cgroup path", root)
	}
	if strings.HasSuffix(root, ".slice") {
		base := strings.TrimSuffix(filepath.Base(root), ".slice")
		parts := strings.Split(base, "-")
		for i, p := range parts {
			if p == "" {
				return nil, fmt.Errorf("%q is not a systemd slice path", root)
			}
			parts[i] = strings.ReplaceAll(p, "_", "-")
		}
		if SystemdPath(parts) != filepath.Clean(root) {
			return nil, fmt.Errorf("%q is not the systemd path of its own slice (want %s)", root, SystemdPath(parts))
		}
		return parts, nil
	}
	parts := strings.Split(strings.Trim(filepath.Clean(root), "/"), "/")
	return parts, nil
}

// Find returns the pod's cgroup, or an *Error of kind NoCgroup.
func (h Hierarchy) Find(uid string) (*Pod, error) {
	if uid == "" {
		return nil, errors.New("find pod cgroup: empty pod UID")
	}
	for _, rel := range h.Candidates(uid) {
		dir := filepath.Join(h.Dir, rel)
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			return &Pod{h: h, Dir: dir}, nil
		}
	}
	return nil, &Error{Kind: NoCgroup, Path: h.Dir, Err: fmt.Errorf("no cgroup for pod %s under any kubelet layout", uid)}
}

// Pod returns the pod cgroup at dir (an absolute directory in the hierarchy).
func (h Hierarchy) Pod(dir string) *Pod { return &Pod{h: h, Dir: dir} }

// Check verifies that this process can freeze the kubelet's pod cgroups:
// the kubelet's top pod cgroup exists (under either driver) and its freeze
// control file opens for writing. It writes nothing.
func (h Hierarchy) Check() error {
	name := append(append([]string{}, h.Root...), "kubepods")
	var lastErr error
	for _, rel := range []string{CgroupfsPath(name), SystemdPath(name)} {
		dir := filepath.Join(h.Dir, rel)
		if _, err := os.Stat(dir); err != nil {
			lastErr = classify(dir, err)
			continue
		}
		file := filepath.Join(dir, h.freezeFile())
		f, err := os.OpenFile(file, os.O_WRONLY, 0)
		if errors.Is(err, fs.ErrNotExist) {
			return &Error{Kind: NoFreezer, Path: file, Err: err}
		}
		if err != nil {
			return classify(file, err)
		}
		return f.Close()
	}
	return lastErr
}

func (h Hierarchy) freezeFile() string {
	if h.Version == V2 {
		return "cgroup.freeze"
	}
	return "freezer.state"
}

func (h Hierarchy) poll() time.Duration {
	if h.Poll > 0 {
		return h.Poll
	}
	return 2 * time.Millisecond
}

// Pod is one pod's cgroup.
type Pod struct {
	h Hierarchy
	// Dir is the cgroup's directory.
	Dir string
}

// Freeze freezes every process of the pod, including those its containers
// start later, and returns once the kernel reports the cgroup frozen (or ctx
// ends, an *Error of kind Timeout).
func (p *Pod) Freeze(ctx context.Context) error {
	if err := p.setFrozen(true); err != nil {
		return err
	}
	if p.h.Version == V2 {
		return p.await(ctx, "frozen", func() (bool, error) { return p.Frozen() })
	}
	// The v1 freezer can stay FREEZING for good when a task forks while it
	// freezes; like runc, write FROZEN again while it does, and every 25th
	// attempt thaw and start over.
	attempt := 0
	return p.await(ctx, "frozen", func() (bool, error) {
		frozen, err := p.Frozen()
		if err != nil || frozen {
			return frozen, err
		}
		attempt++
		if attempt%25 == 0 {
			if err := p.setFrozen(false); err != nil {
				return false, err
			}
		}
		return false, p.setFrozen(true)
	})
}

// Thaw lets the pod's processes run again and returns once the kernel
// reports the cgroup thawed.
func (p *Pod) Thaw(ctx context.Context) error {
	if err := p.setFrozen(false); err != nil {
		return err
	}
	return p.await(ctx, "thawed", func() (bool, error) {
		f, err := p.Frozen()
		return !f, err
	})
}

// Kill kills every process of the pod without letting any of them run
// again: it freezes the pod first (when it is not frozen), then on v2 writes
// cgroup.kill (SIGKILL ends frozen processes); on v1 it sends SIGKILL to
// every process while frozen, thaws so that they die (a pending SIGKILL is
// taken before any user code runs), and freezes again once they are gone.
// It returns once the cgroup holds no process; it leaves the cgroup frozen,
// so a container the kubelet restarts into it stays stopped.
func (p *Pod) Kill(ctx context.Context) error {
	if err := p.Freeze(ctx); err != nil {
		return err
	}
	if p.h.Version == V2 {
		return p.killV2(ctx)
	}
	return p.killV1(ctx)
}

func (p *Pod) killV2(ctx context.Context) error {
	err := p.write("cgroup.kill", "1")
	if IsKind(err, NoCgroup) {
		// A kernel before 5.14 has no cgroup.kill: signal each process.
		if err = p.signalAll(); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	return p.await(ctx, "empty", p.empty)
}

func (p *Pod) killV1(ctx context.Context) error {
	for {
		pids, err := p.Procs()
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		if err := p.signalAll(); err != nil {
			return err
		}
		if err := p.Thaw(ctx); err != nil {
			return err
		}
		gone := func() (bool, error) {
			for _, pid := range pids {
				if alive, err := p.contains(pid); err != nil || alive {
					return false, err
				}
			}
			return true, nil
		}
		err = p.await(ctx, "killed", gone)
		if ferr := p.Freeze(ctx); err == nil {
			err = ferr
		}
		if err != nil {
			return err
		}
	}
}

// signalAll sends SIGKILL to every process in the pod's subtree.
func (p *Pod) signalAll() error {
	pids, err := p.Procs()
	if err != nil {
		return err
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("kill process %d of %s: %w", pid, p.Dir, err)
		}
	}
	return nil
}

// Frozen reports whether the kernel reports the whole cgroup frozen.
func (p *Pod) Frozen() (bool, error) {
	if p.h.Version == V2 {
		v, err := p.eventsField("frozen")
		return v == "1", err
	}
	s, err := p.read("freezer.state")
	return s == "FROZEN", err
}

// Procs lists the processes in the pod's cgroup and all its descendants
// (its containers), as seen from this process's PID namespace.
func (p *Pod) Procs() ([]int, error) {
	var pids []int
	err := filepath.WalkDir(p.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path != p.Dir && errors.Is(err, fs.ErrNotExist) {
				return nil // a container cgroup removed while walking
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(filepath.Join(path, "cgroup.procs"))
		if errors.Is(err, fs.ErrNotExist) && path != p.Dir {
			return nil
		}
		if err != nil {
			return err
		}
		for _, f := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(f)
			if err != nil {
				return fmt.Errorf("%s/cgroup.procs: %q is not a pid", path, f)
			}
			if pid > 0 { // 0: a process outside this PID namespace
				pids = append(pids, pid)
			}
		}
		return nil
	})
	if err != nil {
		return nil, classify(p.Dir, err)
	}
	return pids, nil
}

func (p *Pod) contains(pid int) (bool, error) {
	pids, err := p.Procs()
	for _, q := range pids {
		if q == pid {
			return true, err
		}
	}
	return false, err
}

func (p *Pod) empty() (bool, error) {
	if p.h.Version == V2 {
		v, err := p.eventsField("populated")
		return v == "0", err
	}
	pids, err := p.Procs()
	return len(pids) == 0, err
}

func (p *Pod) setFrozen(frozen bool) error {
	if p.h.Version == V2 {
		v := "0"
		if frozen {
			v = "1"
		}
		err := p.write("cgroup.freeze", v)
		if IsKind(err, NoCgroup) {
			if _, serr := os.Stat(p.Dir); serr == nil {
				return &Error{Kind: NoFreezer, Path: filepath.Join(p.Dir, "cgroup.freeze"), Err: err}
			}
		}
		return err
	}
	v := "THAWED"
	if frozen {
		v = "FROZEN"
	}
	return p.write("freezer.state", v)
}

func (p *Pod) eventsField(key string) (string, error) {
	s, err := p.read("cgroup.events")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == key {
			return v, nil
		}
	}
	return "", fmt.Errorf("%s/cgroup.events has no %q", p.Dir, key)
}

func (p *Pod) read(file string) (string, error) {
	path := filepath.Join(p.Dir, file)
	b, err := os.ReadFile(path)
	if err != nil {
		return "", classify(path, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func (p *Pod) write(file, value string) error {
	path := filepath.Join(p.Dir, file)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return classify(path, err)
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return classify(path, err)
}

// await polls cond until it holds or ctx ends.
func (p *Pod) await(ctx context.Context, what string, cond func() (bool, error)) error {
	t := time.NewTicker(p.h.poll())
	defer t.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return &Error{Kind: Timeout, Path: p.Dir, Err: fmt.Errorf("waiting for the cgroup to be %s: %w", what, ctx.Err())}
		case <-t.C:
		}
	}
}
