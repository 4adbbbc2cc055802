// Package units parses and prints human-readable byte sizes for the vfolder
// CLI (quota limits, policy sizes).
//
// # The rule for units
//
// A size is a whole number of bytes written as a number, an optional space
// and an optional unit:
//
//	no unit, B, byte, bytes      1
//	K  Ki  KiB                   1024        (binary)
//	M  Mi  MiB                   1024^2
//	G  Gi  GiB                   1024^3
//	T  Ti  TiB                   1024^4
//	P  Pi  PiB                   1024^5
//	E  Ei  EiB                   1024^6
//	kB KB                        1000        (decimal: the two-letter "B" forms)
//	MB GB TB PB EB               1000^2 ... 1000^6
//
// So "10G" and "10GiB" are both 10 GiB, as in most cluster tools, while
// "10GB" is 10^10 bytes. Units are matched without regard to case ("10g",
// "10gib", "10gb" are accepted); "b" always means bytes, never bits.
//
// A fraction is allowed as long as the result is a whole number of bytes:
// "1.5G" and "0.25KiB" are fine, "1.5" (no unit) and "1.0001K" are not.
// Negative sizes, signs, exponents, digit separators, more than one unit,
// a unit without a number and values beyond the int64 range are rejected
// with a message that says which rule was broken. Every rejection wraps
// ErrInvalidSize.
//
// ParseSize accepts "0" but no words; ParseLimit additionally accepts
// "unlimited" and "none" for callers where 0 means "no limit".
//
// FormatSize prints sizes with binary units ("10 GiB", "1.5 MiB", "512 B").
// Its output always parses back with ParseSize to a value within 0.5% of the
// original: it uses at most two decimals only when they describe a whole
// number of bytes, and otherwise a whole count of a smaller unit
// ("10342 MiB").
//
// The package is pure: no state, safe for concurrent use.
package units

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/bits"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrInvalidSize is wrapped by every error ParseSize and ParseLimit return.
var ErrInvalidSize = errors.New("invalid size")

// maxInputLen bounds the accepted input; no valid size needs more.
const maxInputLen = 64

// multipliers maps lower-cased unit spellings to their byte value.
var multipliers = map[string]uint64{
	"": 1, "b": 1, "byte": 1, "bytes": 1,

	"k": 1 << 10, "ki": 1 << 10, "kib": 1 << 10,
	"m": 1 << 20, "mi": 1 << 20, "mib": 1 << 20,
	"g": 1 << 30, "gi": 1 << 30, "gib": 1 << 30,
	"t": 1 << 40, "ti": 1 << 40, "tib": 1 << 40,
	"p": 1 << 50, "pi": 1 << 50, "pib": 1 << 50,
	"e": 1 << 60, "ei": 1 << 60, "eib": 1 << 60,

	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "pb": 1e15, "eb": 1e18,
}

// UnitHelp is a one-line summary of the unit rule, for CLI help texts.
const UnitHelp = "sizes: plain bytes or a number with a unit; K/M/G/T/P (= KiB/MiB/GiB/TiB/PiB) are powers of 1024, kB/MB/GB/TB/PB are powers of 1000; e.g. 10G, 500MiB, 1.5T, 20GB"

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidSize, fmt.Sprintf(format, args...))
}

func isDigit(c byte) bool  { return c >= '0' && c <= '9' }
func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isSpace(c byte) bool  { return c == ' ' || c == '\t' }

// ParseSize parses a human-readable size (see the package comment for the
// rules) into a byte count >= 0.
func ParseSize(s string) (int64, error) {
	shown := s
	if len(shown) > maxInputLen {
		shown = shown[:maxInputLen] + "..."
	}
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, invalid("size is empty")
	}
	if len(t) > maxInputLen {
		return 0, invalid("size %q is too long", shown)
	}
	switch t[0] {
	case '-':
		return 0, invalid("size %q is negative; sizes must be 0 or more", t)
	case '+':
		return 0, invalid("size %q must not have a sign", t)
	}

	i := 0
	for i < len(t) && isDigit(t[i]) {
		i++
	}
	intPart := t[:i]
	fracPart := ""
	hadDot := false
	if i < len(t) && t[i] == '.' {
		hadDot = true
		j := i + 1
		for j < len(t) && isDigit(t[j]) {
			j++
		}
		fracPart = t[i+1 : j]
		i = j
	}
	if intPart == "" && fracPart == "" {
		if _, known := multipliers[strings.ToLower(t)]; known && !hadDot {
			return 0, invalid("size %q is a unit without a number (write e.g. \"10G\")", t)
		}
		return 0, invalid("size %q is not a number", t)
	}

	rest := t[i:]
	for len(rest) > 0 && isSpace(rest[0]) {
		rest = rest[1:]
	}
	n := 0
	for n < len(rest) && isLetter(rest[n]) {
		n++
	}
	unit, after := rest[:n], rest[n:]
	if after != "" {
		tail := strings.TrimLeft(after, " \t")
		c, _ := utf8.DecodeRuneInString(after)
		switch {
		case strings.EqualFold(unit, "e") && tail != "" && (isDigit(tail[0]) || tail[0] == '+' || tail[0] == '-'):
			return 0, invalid("size %q uses an exponent; write it with a unit instead (e.g. \"1G\")", t)
		case isDigit(after[0]) || isSpace(after[0]):
			return 0, invalid("size %q has more than one number or unit; write a single number and unit", t)
		case c == ',' || c == '_' || c == '\'':
			return 0, invalid("size %q must not contain digit separators", t)
		case c == '.':
			return 0, invalid("size %q has more than one decimal point", t)
		default:
			return 0, invalid("size %q has an unexpected character %q", t, c)
		}
	}
	mult, ok := multipliers[strings.ToLower(unit)]
	if !ok {
		if isTwoUnits(strings.ToLower(unit)) {
			return 0, invalid("size %q has more than one unit; write a single unit", t)
		}
		return 0, invalid("size %q has an unknown unit %q (%s)", t, unit, UnitHelp)
	}

	// value = (int.frac) * mult, computed exactly.
	num := new(big.Int)
	num.SetString(intPart+fracPart, 10) // digits only: cannot fail
	num.Mul(num, new(big.Int).SetUint64(mult))
	den := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(len(fracPart))), nil)
	q, r := new(big.Int).QuoRem(num, den, new(big.Int))
	if r.Sign() != 0 {
		return 0, invalid("size %q is not a whole number of bytes", t)
	}
	if !q.IsInt64() {
		return 0, invalid("size %q is too large; the maximum is %d bytes (8 EiB - 1)", t, int64(math.MaxInt64))
	}
	return q.Int64(), nil
}

// isTwoUnits reports whether u is two known (non-empty) unit spellings run
// together, such as "gmb" or "gibkb".
func isTwoUnits(u string) bool {
	for k := 1; k < len(u); k++ {
		_, a := multipliers[u[:k]]
		_, b := multipliers[u[k:]]
		if a && b {
			return true
		}
	}
	return false
}

// ParseLimit is ParseSize that also accepts "unlimited" and "none" (any
// case) as 0, for limits where 0 means "no limit".
func ParseLimit(s string) (int64, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "unlimited", "none":
		return 0, nil
	}
	return ParseSize(s)
}

var binaryUnits = [...]string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}

// roundDiv returns n/d rounded half up, or rounded down when rounding up
// would make the result times d exceed the int64 range.
func roundDiv(n, d uint64) uint64 {
	q, r := n/d, n%d
	if r >= d-r { // r >= d/2 without overflow
		hi, lo := bits.Mul64(q+1, d)
		if hi == 0 && lo <= math.MaxInt64 {
			return q + 1
		}
	}
	return q
}

// FormatSize prints n with binary units: "512 B", "1.5 MiB", "10 GiB".
// The output re-parses with ParseSize to within 0.5% of n (see the package
// comment). Negative values are printed with a leading "-".
func FormatSize(n int64) string {
	if n < 0 {
		return "-" + formatUnsigned(uint64(-(n+1))+1)
	}
	return formatUnsigned(uint64(n))
}

func formatUnsigned(n uint64) string {
	if n < 1024 {
		return strconv.FormatUint(n, 10) + " B"
	}
	k := (bits.Len64(n) - 1) / 10 // largest unit with n >= 1024^k
	if k >= len(binaryUnits) {
		k = len(binaryUnits) - 1
	}
	u := uint64(1) << (10 * k)
	whole, rem := n/u, n%u
	if rem == 0 {
		return strconv.FormatUint(whole, 10) + " " + binaryUnits[k]
	}
	if whole >= 100 {
		return strconv.FormatUint(roundDiv(n, u), 10) + " " + binaryUnits[k]
	}
	// Hundredths of the unit, rounded: rem*100/u without overflow.
	hi, lo := bits.Mul64(rem, 100)
	h, hr := bits.Div64(hi, lo, u)
	if hr >= u-hr {
		h++
	}
	w := whole
	if h == 100 {
		w, h = w+1, 0
	}
	// Two decimals of a binary unit are whole bytes only in steps of 0.25.
	if h%25 == 0 && w <= math.MaxInt64>>(10*k) && (w<<(10*k))+(h/25)*(u/4) <= math.MaxInt64 {
		s := strconv.FormatUint(w, 10)
		switch h {
		case 0:
		case 50:
			s += ".5"
		default:
			s += fmt.Sprintf(".%02d", h)
		}
		return s + " " + binaryUnits[k]
	}
	smaller := u >> 10
	return strconv.FormatUint(roundDiv(n, smaller), 10) + " " + binaryUnits[k-1]
}
