package sink

import (
	"testing"
	"time"
)

func TestSinksApplyEveryStrategyIncludingShardKeyMoves(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	g := newGen(f, 1)
	g.produce(3000)
	stop0, _ := f.runSink("s0", Options{})
	stop1, _ := f.runSink("s1", Options{})
	// More events while the sinks run.
	g.produce(2000)
	f.waitCaughtUp(2 * time.Minute)
	if err := stop0(); err != nil {
		t.Fatalf("s0: %v", err)
	}
	if err := stop1(); err != nil {
		t.Fatalf("s1: %v", err)
	}
	g.loadSource()
	f.assertShardsMatchSource()
}
