package config

import (
	"strings"
	"testing"
)

// TestFloatReadsNumbersInRangeAndNamesTheSettingOtherwise: NaN, which
// strconv.ParseFloat reads and no comparison rejects, is refused like any
// number out of range.
func TestFloatReadsNumbersInRangeAndNamesTheSettingOtherwise(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want float64
		err  string
	}{
		{"", 200, ""},
		{"  ", 200, ""},
		{"150", 150, ""},
		{" 0.1 ", 0.1, ""},
		{"100000", 100000, ""},
		{"NaN", 0, `TIMQ_RATE: must be a number from 0.1 to 100000, got "NaN"`},
		{"-nan", 0, `got "-nan"`},
		{"Inf", 0, `got "Inf"`},
		{"-Inf", 0, `got "-Inf"`},
		{"1e309", 0, `got "1e309"`},
		{"0", 0, `got "0"`},
		{"100001", 0, `got "100001"`},
		{"fast", 0, `got "fast"`},
	} {
		got, err := Float(func(string) string { return tc.raw }, "TIMQ_RATE", 200, 0.1, 100000)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("%q: got %v, %v; want %v", tc.raw, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: got %v, %v; want an error containing %q", tc.raw, got, err, tc.err)
		}
	}
}
