package core

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
)

// UniqueName returns prefix + name sanitized + sep + 8 random hex digits, at most maxLen
// bytes, using only [a-z0-9] and sep in the part made from name. Database names, topic
// prefixes and file names built from it are valid and never collide between parallel
// runs. An empty name (or one with nothing usable) leaves prefix + the hex digits.
func UniqueName(prefix, name string, sep byte, maxLen int) string {
	suffix := RandomHex(4)
	var b strings.Builder
	lastSep := true
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
			lastSep = false
		case !lastSep:
			b.WriteByte(sep)
			lastSep = true
		}
	}
	body := strings.TrimRight(b.String(), string(sep))
	if room := maxLen - len(prefix) - 1 - len(suffix); len(body) > room {
		body = strings.TrimRight(body[:max(room, 0)], string(sep))
	}
	if body == "" {
		return prefix + suffix
	}
	return prefix + body + string(sep) + suffix
}

// RandomHex returns n random bytes as 2n hex digits.
func RandomHex(n int) string {
	buf := make([]byte, n)
	_, _ = rand.Read(buf) // never fails: crypto/rand crashes the program instead
	return hex.EncodeToString(buf)
}
