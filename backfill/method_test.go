package backfill

import (
	"testing"

	"github.com/cleave-dev/cleave/mysqlx"
)

func TestTheSnapshotMethodFollowsTheSourcesProduct(t *testing.T) {
	for _, tc := range []struct {
		version    string
		lockTables bool
		want       string
	}{
		{"10.11.19-MariaDB-0+deb12u1-log", false, methodStatus},
		{"10.11.19-MariaDB-0+deb12u1-log", true, methodLock},
		{"9.7.4-2", false, methodLock},
		{"8.0.36", false, methodLock},
	} {
		c := &copier{b: &Backfill{opts: Options{LockTables: tc.lockTables}}, flavor: mysqlx.FlavorOf(tc.version)}
		if got := c.method(); got != tc.want {
			t.Errorf("%s (LockTables %v): method %s, want %s", tc.version, tc.lockTables, got, tc.want)
		}
	}
}
