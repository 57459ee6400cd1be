package main

import (
	"os"
	"runtime/debug"
)

// memoryLimit is the soft heap limit the long-running commands set unless GOMEMLIMIT is
// set. They run the collector less often than Go's default (their live heap is small
// and bounded, their allocation rate high); the limit keeps a burst, such as many small
// transactions each opening its own Kafka batch, from growing the heap without bound.
const memoryLimit = 1 << 30

// tuneGC sets the collector's target to percent unless GOGC is set, and the soft memory
// limit unless GOMEMLIMIT is set.
func tuneGC(percent int) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(percent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
}
