//go:build !cleavetest

package main

import (
	"github.com/cleave-dev/cleave/cutover"
	"github.com/cleave-dev/cleave/sink"
)

// testHooks does nothing in the shipped binary: fault injection is compiled in only with
// the cleavetest build tag (testhooks.go).
func testHooks(*sink.Options) error { return nil }

// cutoverTestHooks does nothing in the shipped binary.
func cutoverTestHooks(*cutover.Options) error { return nil }
