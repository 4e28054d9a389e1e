package chatapi

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// redactURL returns rawURL with the value of every usersig query parameter
// replaced by REDACTED, leaving everything else as it was.
func redactURL(rawURL string) string {
	base, query, ok := strings.Cut(rawURL, "?")
	if !ok {
		return rawURL
	}
	query, frag, hasFrag := strings.Cut(query, "#")
	parts := strings.Split(query, "&")
	for i, p := range parts {
		name, _, _ := strings.Cut(p, "=")
		if n, err := url.QueryUnescape(name); err == nil && strings.EqualFold(n, "usersig") {
			parts[i] = name + "=" + redacted
		}
	}
	out := base + "?" + strings.Join(parts, "&")
	if hasFrag {
		out += "#" + frag
	}
	return out
}

// usersigParam matches a usersig query parameter wherever a string carries
// one (an echoed request line, a proxy's error page): its name in any case,
// with "=" raw or percent-escaped, and its value up to the next separator.
// Redacting by the parameter catches a sig in spellings that the value
// match below cannot foresee.
var usersigParam = regexp.MustCompile(`(?i)(usersig(?:=|%3d))[^&\s"'<>#\\]*`)

// scrubber removes secrets from strings: the secret key (captured in a
// closure, like signer's), any sig passed in, and the value of every usersig
// parameter. It runs on error paths only (answers that failed), so it may
// compile a pattern per secret.
type scrubber func(s string, sigs ...string) string

func newScrubber(key string) scrubber {
	return func(s string, sigs ...string) string {
		s = usersigParam.ReplaceAllString(s, "${1}"+redacted)
		for _, secret := range append(sigs, key) {
			if secret == "" {
				continue
			}
			s = spellings(secret).ReplaceAllLiteralString(s, redacted)
		}
		return s
	}
}

// spellings returns a pattern that matches secret however a URL may carry
// it: each byte raw or percent-escaped with either case of hex digits, and
// a space also as "+". So "a/b" matches "a/b", "a%2Fb" and "a%2fb", and a
// partly escaped copy matches too.
func spellings(secret string) *regexp.Regexp {
	var b strings.Builder
	for i := 0; i < len(secret); i++ {
		c := secret[i]
		b.WriteString("(?:")
		b.WriteString(regexp.QuoteMeta(string(c)))
		if c == ' ' {
			b.WriteString("|\\+")
		}
		fmt.Fprintf(&b, "|%%(?i:%02x))", c)
	}
	return regexp.MustCompile(b.String())
}

// redactedError is an error whose message had secrets removed. It unwraps to
// the original so that errors.Is and errors.As still see, for example,
// context.DeadlineExceeded or a *net.OpError.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redactErr returns err made safe to print: a *url.Error gets its URL's
// usersig redacted, and if the message still holds a secret, the whole
// message is scrubbed.
func (sc scrubber) redactErr(err error, sig string) error {
	if err == nil {
		return nil
	}
	if ue, ok := err.(*url.Error); ok {
		err = &url.Error{Op: ue.Op, URL: sc(redactURL(ue.URL), sig), Err: ue.Err}
	}
	if msg := err.Error(); sc(msg, sig) != msg {
		err = &redactedError{msg: sc(msg, sig), err: err}
	}
	return err
}

// snippetLen is how much of an unexpected answer body an error quotes.
const snippetLen = 200

// snippet returns the start of an answer body, quoted, for an error message.
func snippet(body []byte) string {
	cut := len(body) > snippetLen
	if cut {
		body = body[:snippetLen]
	}
	q := strconv.Quote(strings.ToValidUTF8(string(body), "\uFFFD"))
	if cut {
		q += "..."
	}
	return q
}
