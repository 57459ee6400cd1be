package mysqlx

import "testing"

func TestVersionAtLeastReadsMajorAndMinor(t *testing.T) {
	for _, tc := range []struct {
		version      string
		major, minor int
		want         bool
	}{
		{"10.11.19-MariaDB-0+deb12u1-log", 10, 5, true},
		{"10.4.34-MariaDB", 10, 5, false},
		{"11.4.2-MariaDB", 10, 11, true},
		{"8.0.36", 8, 2, false},
		{"8.4.3", 8, 2, true},
		{"8.2.0-commercial", 8, 2, true},
		{"garbage", 1, 0, false},
		{"", 0, 0, false},
	} {
		if got := VersionAtLeast(tc.version, tc.major, tc.minor); got != tc.want {
			t.Errorf("VersionAtLeast(%q, %d, %d) = %v, want %v", tc.version, tc.major, tc.minor, got, tc.want)
		}
	}
}
