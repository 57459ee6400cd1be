package logging

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/internal/testenv/core"
)

func TestLogFileRotatesBySizeAndDropsOldFilesByAge(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "cleave.log")
	// A file rotated in 2020 (lumberjack reads the time from the name): past max_age_days.
	old := filepath.Join(dir, "cleave-2020-01-01T00-00-00.000.log.gz")
	if err := os.WriteFile(old, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	log, err := New(config.Log{Level: "info", Format: "json", File: file, MaxSizeMB: 1, MaxBackups: 3, MaxAgeDays: 7})
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Repeat("x", 1000)
	for i := 0; i < 1500; i++ { // about 1.5 MB of lines: one rotation
		log.Info("filler", zap.Int("i", i), zap.String("pad", line))
	}
	if err := log.Sync(); err != nil {
		t.Fatal(err)
	}
	// Rotated files are compressed and old ones removed in the background: wait until the
	// new one is compressed and the old one gone, so that nothing writes into the folder
	// once the test has ended.
	var names []string
	err = core.Poll(context.Background(), 20*time.Millisecond, time.Minute, func() (bool, error) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return false, err
		}
		names = names[:0]
		compressed := false
		for _, e := range entries {
			names = append(names, e.Name())
			switch {
			case e.Name() == filepath.Base(old):
				return false, nil // not yet removed
			case e.Name() != "cleave.log" && !strings.HasSuffix(e.Name(), ".gz"):
				return false, nil // a rotated file not yet compressed
			}
			compressed = compressed || strings.HasSuffix(e.Name(), ".log.gz")
		}
		return compressed, nil
	})
	if err != nil {
		t.Fatalf("after 1.5 MB of logs with max_size_mb 1 and max_age_days 7, want one compressed rotated file beside %s and the one of 2020 removed; have %v: %v", file, names, err)
	}
	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() > 1<<20 {
		t.Fatalf("%s holds %d bytes, over its 1 MiB limit", file, st.Size())
	}
}

func TestBadLevelIsRefusedByKey(t *testing.T) {
	if _, err := New(config.Log{Level: "loud"}); err == nil || !strings.Contains(err.Error(), "log.level") {
		t.Fatalf("New with level loud: %v, want an error naming log.level", err)
	}
}
