package core

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPoll(t *testing.T) {
	hopeless := errors.New("the server exited")
	tests := []struct {
		name    string
		results []bool // what cond returns on each call, false once they run out
		condErr error
		timeout time.Duration
		want    error
		calls   int
	}{
		{name: "returns once the condition holds", results: []bool{false, false, true}, timeout: time.Minute, calls: 3},
		{name: "gives up at once on cond's error", condErr: hopeless, timeout: time.Minute, want: hopeless, calls: 1},
		{name: "times out, having tried at least once", timeout: 0, want: ErrTimeout, calls: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			err := Poll(context.Background(), time.Millisecond, tt.timeout, func() (bool, error) {
				calls++
				if tt.condErr != nil {
					return false, tt.condErr
				}
				return calls <= len(tt.results) && tt.results[calls-1], nil
			})
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("Poll = %v, want %v", err, tt.want)
			}
			if calls != tt.calls {
				t.Errorf("cond called %d times, want %d", calls, tt.calls)
			}
		})
	}
	t.Run("returns when ctx ends", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := Poll(ctx, time.Hour, time.Hour, func() (bool, error) { return false, nil })
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Poll = %v, want context.Canceled", err)
		}
	})
}

func TestProc(t *testing.T) {
	dir := t.TempDir()
	t.Run("a process that exits is no longer alive and keeps its exit", func(t *testing.T) {
		p, err := Start(Command{Name: "false", Argv: []string{"false"}, Log: filepath.Join(dir, "false.log")})
		if err != nil {
			t.Fatal(err)
		}
		err = p.Stop(time.Minute)
		if err == nil || errors.Is(err, ErrKilled) {
			t.Fatalf("Stop = %v, want the exit status", err)
		}
		if !p.Exited() || p.Alive() == nil || p.Err() == nil {
			t.Fatalf("exited %v, alive %v, err %v", p.Exited(), p.Alive(), p.Err())
		}
	})
	t.Run("a process that ignores SIGTERM is killed after the grace", func(t *testing.T) {
		log := filepath.Join(dir, "stubborn.log")
		p, err := Start(Command{Name: "stubborn", Argv: []string{"sh", "-c", `trap "" TERM; echo ready; while :; do sleep 1; done`},
			Log: log, DieWithParent: true})
		if err != nil {
			t.Fatal(err)
		}
		// SIGTERM before the trap is set would end it.
		err = Poll(context.Background(), 10*time.Millisecond, time.Minute, func() (bool, error) {
			b, _ := os.ReadFile(log)
			return strings.Contains(string(b), "ready"), p.Alive()
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Stop(50 * time.Millisecond); !errors.Is(err, ErrKilled) {
			t.Fatalf("Stop = %v, want ErrKilled", err)
		}
		if !p.Exited() {
			t.Fatal("still running after Stop")
		}
	})
	t.Run("a missing program is an error naming it", func(t *testing.T) {
		_, err := Start(Command{Name: "nothing", Argv: []string{filepath.Join(dir, "no-such-program")}, Log: filepath.Join(dir, "n.log")})
		if err == nil {
			t.Fatal("no error")
		}
	})
}

func TestDeleteTopicsMarksAnUnreachableCluster(t *testing.T) {
	port, err := FreePort() // nothing listens there once FreePort returns
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = DeleteTopics(ctx, []string{fmt.Sprintf("127.0.0.1:%d", port)}, "t-")
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("DeleteTopics = %v, want ErrUnreachable", err)
	}
	if err := DeleteTopics(ctx, nil, "t-"); err != nil {
		t.Fatalf("DeleteTopics without brokers = %v, want nil", err)
	}
}
