package chatapi

import (
	"net/url"
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

// scrubber removes secrets from strings: the secret key (captured in a
// closure, like signer's) and any sig passed in.
type scrubber func(s string, sigs ...string) string

func newScrubber(key string) scrubber {
	return func(s string, sigs ...string) string {
		for _, secret := range append(sigs, key) {
			if secret == "" {
				continue
			}
			s = strings.ReplaceAll(s, secret, redacted)
			if esc := url.QueryEscape(secret); esc != secret {
				s = strings.ReplaceAll(s, esc, redacted)
			}
		}
		return s
	}
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
