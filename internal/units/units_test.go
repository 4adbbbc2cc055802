package units

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestParseSizeAccepts(t *testing.T) {
	const (
		KiB = int64(1) << 10
		MiB = int64(1) << 20
		GiB = int64(1) << 30
		TiB = int64(1) << 40
		PiB = int64(1) << 50
		EiB = int64(1) << 60
	)
	cases := []struct {
		in   string
		want int64
	}{
		{"0", 0},
		{"000", 0},
		{"0G", 0},
		{"1048576", 1048576},
		{"  42  ", 42},
		{"1B", 1},
		{"7 bytes", 7},
		{"1 byte", 1},
		{"1K", KiB},
		{"1k", KiB},
		{"1Ki", KiB},
		{"1KiB", KiB},
		{"1kib", KiB},
		{"1kB", 1000},
		{"1KB", 1000},
		{"1kb", 1000},
		{"500MiB", 500 * MiB},
		{"500 MiB", 500 * MiB},
		{"500M", 500 * MiB},
		{"500MB", 500_000_000},
		{"10G", 10 * GiB},
		{"10 G", 10 * GiB},
		{"10g", 10 * GiB},
		{"10Gi", 10 * GiB},
		{"10GiB", 10 * GiB},
		{"10GB", 10_000_000_000},
		{"10gb", 10_000_000_000},
		{"2T", 2 * TiB},
		{"2TB", 2_000_000_000_000},
		{"3P", 3 * PiB},
		{"3PB", 3_000_000_000_000_000},
		{"7E", 7 * EiB},
		{"1.5G", GiB + GiB/2},
		{"1.5 GiB", GiB + GiB/2},
		{".5K", 512},
		{"0.25KiB", 256},
		{"1.0", 1},
		{"2.", 2},
		{"1.000K", KiB},
		{"1.5kB", 1500},
		{"1.001kB", 1001},
		{"9223372036854775807", math.MaxInt64},
		{"8191.99999999999999911182158029987476766109466552734375P", 8191*PiB + (PiB - 1)},
	}
	for _, c := range cases {
		got, err := ParseSize(c.in)
		if err != nil {
			t.Errorf("ParseSize(%q): unexpected error %v", c.in, err)
			continue
		}
		if got != c.want {
			t.Errorf("ParseSize(%q) = %d, want %d", c.in, got, c.want)
		}
	}
}

func TestParseSizeRejects(t *testing.T) {
	cases := []struct {
		class string
		in    string
		msg   string // must appear in the error
	}{
		{"empty", "", "empty"},
		{"blank", "   ", "empty"},
		{"negative", "-5G", "negative"},
		{"negative zero", "-0", "negative"},
		{"negative bytes", "-1", "negative"},
		{"sign", "+5G", "sign"},
		{"fractional bytes", "1.5", "whole number of bytes"},
		{"fractional bytes with B", "0.5B", "whole number of bytes"},
		{"inexact fraction", "1.0000001K", "whole number of bytes"},
		{"inexact decimal unit", "1.0001kB", "whole number of bytes"},
		{"overflow plain", "9223372036854775808", "too large"},
		{"overflow unit", "8E", "too large"},
		{"overflow huge", "99999999999999999999999999999P", "too large"},
		{"overflow decimal", "9.3EB", "too large"},
		{"garbage", "abc", "not a number"},
		{"garbage symbol", "#12", "not a number"},
		{"unit only", "G", "unit without a number"},
		{"unit only long", "GiB", "unit without a number"},
		{"dot only", ".", "not a number"},
		{"dot unit", ".G", "not a number"},
		{"unknown unit", "12XB", "unknown unit"},
		{"unknown unit word", "12 gigs", "unknown unit"},
		{"bits are not bytes", "12Gbit", "unknown unit"},
		{"two units glued", "12GMB", "more than one unit"},
		{"two units spaced", "1K B", "more than one"},
		{"two units two numbers", "1G2M", "more than one"},
		{"two numbers", "1 2", "more than one"},
		{"two decimal points", "1.2.3G", "decimal point"},
		{"separator comma", "1,000", "separator"},
		{"separator underscore", "1_000", "separator"},
		{"exponent", "1e9", "exponent"},
		{"exponent signed", "1E+9", "exponent"},
		{"hex", "0x10", "more than one"},
		{"trailing symbol", "10G!", "unexpected character"},
		{"non-ascii", "10Gб", "unexpected character"},
		{"too long", strings.Repeat("1", 65), "too long"},
	}
	for _, c := range cases {
		t.Run(c.class, func(t *testing.T) {
			got, err := ParseSize(c.in)
			if err == nil {
				t.Fatalf("ParseSize(%q) = %d, want an error", c.in, got)
			}
			if !errors.Is(err, ErrInvalidSize) {
				t.Errorf("ParseSize(%q) error %v does not wrap ErrInvalidSize", c.in, err)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("ParseSize(%q) error %q does not mention %q", c.in, err, c.msg)
			}
			if c.in != "" && strings.TrimSpace(c.in) != "" && len(c.in) <= maxInputLen && !strings.Contains(err.Error(), strings.TrimSpace(c.in)) {
				t.Errorf("ParseSize(%q) error %q does not quote the input", c.in, err)
			}
		})
	}
}

func TestParseLimit(t *testing.T) {
	for _, in := range []string{"unlimited", "UNLIMITED", " none ", "None", "0"} {
		got, err := ParseLimit(in)
		if err != nil || got != 0 {
			t.Errorf("ParseLimit(%q) = %d, %v; want 0, nil", in, got, err)
		}
	}
	if got, err := ParseLimit("10G"); err != nil || got != 10<<30 {
		t.Errorf("ParseLimit(10G) = %d, %v", got, err)
	}
	if _, err := ParseSize("unlimited"); err == nil {
		t.Error("ParseSize accepted \"unlimited\"; only ParseLimit may")
	}
	if _, err := ParseLimit("-1"); err == nil {
		t.Error("ParseLimit accepted -1")
	}
}

func TestFormatSize(t *testing.T) {
	cases := []struct {
		in   int64
		want string
	}{
		{0, "0 B"},
		{1, "1 B"},
		{512, "512 B"},
		{1023, "1023 B"},
		{1024, "1 KiB"},
		{1536, "1.5 KiB"},
		{1500, "1500 B"}, // 1.46 KiB is not whole bytes: shown in bytes
		{1280, "1.25 KiB"},
		{3 << 19, "1.5 MiB"},
		{10 << 30, "10 GiB"},
		{500 << 20, "500 MiB"},
		{1<<30 + 1<<28 + 1<<27, "1408 MiB"}, // 1.375 GiB rounds to 1.38: not whole bytes
		{1<<30 + 1<<28, "1.25 GiB"},
		{10*(1<<30) + (1<<30)/10, "10342 MiB"},
		{523*(1<<20) + 400*(1<<10), "523 MiB"},
		{-(10 << 30), "-10 GiB"},
		{math.MaxInt64, "8191 PiB"},
		{math.MinInt64, "-8 EiB"},
	}
	for _, c := range cases {
		if got := FormatSize(c.in); got != c.want {
			t.Errorf("FormatSize(%d) = %q, want %q", c.in, got, c.want)
		}
	}
}

// checkRoundTrip asserts that FormatSize(n) parses back to within 0.5% of n.
func checkRoundTrip(t *testing.T, n int64) {
	t.Helper()
	s := FormatSize(n)
	back, err := ParseSize(s)
	if err != nil {
		t.Fatalf("FormatSize(%d) = %q does not re-parse: %v", n, s, err)
	}
	d := back - n
	if d < 0 {
		d = -d
	}
	if d > n/200 {
		t.Fatalf("FormatSize(%d) = %q re-parses to %d: off by %d (more than 0.5%%)", n, s, back, d)
	}
}

func TestFormatSizeRoundTrip(t *testing.T) {
	for _, n := range []int64{0, 1, 1023, 1024, 1025, 1500, 999_999, 1 << 20, 1<<20 + 1,
		10_000_000_000, 123_456_789_012, 1<<62 + 12345, math.MaxInt64, math.MaxInt64 - 1<<59} {
		checkRoundTrip(t, n)
	}
	for shift := 0; shift < 63; shift++ {
		for _, delta := range []int64{-1, 0, 1, 3} {
			n := int64(1)<<shift + delta
			if n >= 0 {
				checkRoundTrip(t, n)
			}
			n = int64(1)<<shift*3/2 + delta
			if n >= 0 {
				checkRoundTrip(t, n)
			}
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "1048576", "10G", "500MiB", "1.5G", "1.0000001K", "-5G",
		"1.5", "12XB", "G", "", "1G2M", "9223372036854775807", "8E", ".5k", "1e9", "10 GB", "unlimited"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidSize) {
				t.Fatalf("ParseSize(%q) error %v does not wrap ErrInvalidSize", s, err)
			}
			if n != 0 {
				t.Fatalf("ParseSize(%q) returned %d with an error", s, n)
			}
			return
		}
		if n < 0 {
			t.Fatalf("ParseSize(%q) = %d < 0", s, n)
		}
		checkRoundTrip(t, n)
		// ParseLimit agrees with ParseSize on everything ParseSize accepts.
		if m, err := ParseLimit(s); err != nil || m != n {
			t.Fatalf("ParseLimit(%q) = %d, %v; ParseSize gave %d", s, m, err, n)
		}
	})
}

func FuzzFormatSize(f *testing.F) {
	for _, n := range []int64{0, 1, 1500, 1 << 30, math.MaxInt64, 10342 << 20} {
		f.Add(n)
	}
	f.Fuzz(func(t *testing.T, n int64) {
		if n < 0 {
			if s := FormatSize(n); !strings.HasPrefix(s, "-") {
				t.Fatalf("FormatSize(%d) = %q has no minus sign", n, s)
			}
			return
		}
		checkRoundTrip(t, n)
	})
}
