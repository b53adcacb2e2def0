package lease

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Store keeps the send time of the newest acknowledged heartbeat across
// agent restarts, as a reading of a clock that runs across processes (the
// kernel's CLOCK_BOOTTIME), in a file on a tmpfs that lives as long as the
// boot (/run/roam/fence-lease). A restarted agent needs it before anything
// else: the cluster counts from that heartbeat, so the restarted agent must
// fence when the previous one would have.
type Store struct {
	// Path is the file.
	Path string
	// Boot reads the clock shared by all processes of this boot.
	Boot func() (time.Duration, error)
}

// Save records that the heartbeat sent at sentAt (on the agent's clock,
// whose current reading is now) was acknowledged.
func (s Store) Save(sentAt, now time.Time) error {
	boot, err := s.Boot()
	if err != nil {
		return fmt.Errorf("fence lease state: %w", err)
	}
	at := boot - now.Sub(sentAt)
	return s.write(strconv.FormatInt(int64(at), 10))
}

// SaveRevoked records that the cluster revoked the lease: a restarted agent
// must not count from an acknowledgement before the revocation.
func (s Store) SaveRevoked() error { return s.write(revoked) }

// write replaces the file atomically.
func (s Store) write(v string) error {
	tmp := s.Path + ".tmp"
	if err := os.WriteFile(tmp, []byte(v+"\n"), 0o600); err != nil {
		return fmt.Errorf("fence lease state: %w", err)
	}
	if err := os.Rename(tmp, s.Path); err != nil {
		return fmt.Errorf("fence lease state: %w", err)
	}
	return nil
}

// revoked is the file's content after a revocation.
const revoked = "revoked"

// Restore returns the send time, on the agent's clock whose current
// reading is now, of the newest heartbeat acknowledged before this agent
// started. Without a saved time (the first agent since the robot booted,
// when no pod can have outlived a previous lease) it returns now: the lease
// then starts as if acknowledged at the agent's start. After a revocation
// it returns the zero time: the lease is expired.
func (s Store) Restore(now time.Time) (time.Time, error) {
	b, err := os.ReadFile(s.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return now, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("fence lease state: %w", err)
	}
	if strings.TrimSpace(string(b)) == revoked {
		return time.Time{}, nil
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("fence lease state %s: %q is not a clock reading", s.Path, strings.TrimSpace(string(b)))
	}
	boot, err := s.Boot()
	if err != nil {
		return time.Time{}, fmt.Errorf("fence lease state: %w", err)
	}
	ago := boot - time.Duration(v)
	if ago < 0 {
		return time.Time{}, fmt.Errorf("fence lease state %s: saved %v after the clock's current reading %v", s.Path, time.Duration(v), boot)
	}
	return now.Add(-ago), nil
}

// MkdirAll creates the directory of the file.
func (s Store) MkdirAll() error { return os.MkdirAll(filepath.Dir(s.Path), 0o755) }
