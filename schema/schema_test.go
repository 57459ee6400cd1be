package schema

import "testing"

func TestGeneratedExtraTellsGeneratedColumnsFromExpressionDefaults(t *testing.T) {
	for _, tc := range []struct {
		extra string
		want  bool
	}{
		{"VIRTUAL GENERATED", true},
		{"STORED GENERATED", true},
		{"PERSISTENT GENERATED", true},
		{"DEFAULT_GENERATED", false},
		{"DEFAULT_GENERATED on update CURRENT_TIMESTAMP", false},
		{"on update current_timestamp()", false},
		{"auto_increment", false},
		{"INVISIBLE", false},
		{"", false},
	} {
		if got := generatedExtra(tc.extra); got != tc.want {
			t.Errorf("generatedExtra(%q) = %v, want %v", tc.extra, got, tc.want)
		}
	}
}
