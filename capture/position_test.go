package capture

import (
	"errors"
	"strings"
	"testing"
)

func TestGTIDStateTellsWhatTheSourcesHistoryLacks(t *testing.T) {
	const uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
	for _, tc := range []struct {
		name, dialect, seen, executed string
		missing                       string // substring; "" for none
	}{
		{"a MariaDB source further on has everything", "mariadb", "0-1-42,1-7-3", "0-1-50,1-7-3", ""},
		{"a MariaDB source behind in one domain", "mariadb", "0-1-42,1-7-3", "0-1-41,1-7-3", "GTID 0-1-42"},
		{"a MariaDB source without the domain", "mariadb", "0-1-42,1-7-3", "0-1-42", "GTID 1-7-3"},
		{"a MySQL source further on has everything", "mysql", uuid + ":1-42", uuid + ":1-50", ""},
		{"a MySQL source reset and numbered from 1 again", "mysql", uuid + ":1-42", uuid + ":1-7", "GTIDs " + uuid + ":1-42"},
		{"a MySQL source without GTIDs", "mysql", uuid + ":1-42", "", "executed only unset"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen, err := newGTIDState(tc.dialect, tc.seen)
			if err != nil {
				t.Fatal(err)
			}
			missing, err := seen.missingFrom(tc.executed)
			if err != nil {
				t.Fatal(err)
			}
			if (missing == "") != (tc.missing == "") || !strings.Contains(missing, tc.missing) {
				t.Errorf("missingFrom(%q) = %q, want %q", tc.executed, missing, tc.missing)
			}
		})
	}
	seen, err := newGTIDState("mariadb", "0-1-42")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := seen.missingFrom("not a position"); !errors.Is(err, ErrSource) {
		t.Errorf("an unreadable MariaDB position: err = %v, want ErrSource", err)
	}
}
