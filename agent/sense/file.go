// Package sense receives what the robot senses from the robot's own
// software, without a Kubernetes client: a watched state file and a local
// HTTP endpoint. Both hand every valid state to a Sink; invalid input is
// reported and dropped, so the last good state keeps serving.
package sense

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/roam-dev/roam/agent/state"
)

// Source names where a state came from (it labels the errors metric).
type Source string

// Sources.
const (
	SourceFile Source = "file"
	SourceHTTP Source = "http"
)

// Sink receives valid states and rejected input.
type Sink interface {
	// State is called with each valid state.
	State(src Source, s state.State)
	// Invalid is called when input from src was rejected; err names the
	// field and reason (a *state.FieldError) or the I/O failure.
	Invalid(src Source, err error)
}

// DefaultStateFile is where the robot's software writes its state.
const DefaultStateFile = "/run/roam/state.yaml"

// FileWatcher watches a state file. It watches the file's directory, not
// the file, so writers that replace the file by an atomic rename (write a
// temporary file, then rename it over the state file) are seen as well as
// writers that rewrite it in place. Removing the file changes nothing: the
// last state keeps serving.
type FileWatcher struct {
	// Path is the state file.
	Path string
	// Settle is how long the file must be quiet after a change before it
	// is read, so a writer's several writes are read once (default 20 ms).
	Settle time.Duration
	// Clock defaults to the real clock.
	Clock clock.WithTicker
}

// Run reads the file once, then on every change, until ctx is done. It
// creates the file's directory when missing.
func (w *FileWatcher) Run(ctx context.Context, sink Sink) error {
	clk := w.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	settle := w.Settle
	if settle == 0 {
		settle = 20 * time.Millisecond
	}
	path := filepath.Clean(w.Path)
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating state directory %s: %w", dir, err)
	}
	watcher, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching %s: %w", dir, err)
	}
	defer func() { _ = watcher.Close() }()
	if err := watcher.Add(dir); err != nil {
		return fmt.Errorf("watching %s: %w", dir, err)
	}
	logger := klog.FromContext(ctx).WithValues("file", path)
	logger.Info("Watching the state file")

	var last []byte
	read := func() {
		data, err := readLimited(path)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return
		case err != nil:
			sink.Invalid(SourceFile, err)
			return
		}
		if last != nil && string(data) == string(last) {
			return
		}
		last = data
		s, err := state.Parse(data)
		if err != nil {
			sink.Invalid(SourceFile, fmt.Errorf("%s: %w", path, err))
			return
		}
		sink.State(SourceFile, s)
	}
	read()

	var timer clock.Timer
	var fire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return nil
		case ev, ok := <-watcher.Events:
			if !ok {
				return errors.New("state file watcher closed")
			}
			if filepath.Clean(ev.Name) != path || !ev.Has(fsnotify.Create|fsnotify.Write) {
				continue
			}
			if timer == nil {
				timer = clk.NewTimer(settle)
			} else {
				timer.Stop()
				timer.Reset(settle)
			}
			fire = timer.C()
		case err, ok := <-watcher.Errors:
			if !ok {
				return errors.New("state file watcher closed")
			}
			// An overflow loses events: read the file to catch up.
			logger.Error(err, "Watching the state file")
			read()
		case <-fire:
			fire = nil
			read()
		}
	}
}

// readLimited reads at most state.MaxSize+1 bytes of path, so an oversized
// file is rejected by the parser without being read whole.
func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	data, err := io.ReadAll(io.LimitReader(f, state.MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return data, nil
}
