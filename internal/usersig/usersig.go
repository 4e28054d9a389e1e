// Package usersig verifies Tencent Cloud Chat UserSigs (tls-sig-api-v2).
//
// A UserSig is a JSON document
//
//	{"TLS.ver":"2.0","TLS.identifier":ID,"TLS.sdkappid":APP,"TLS.expire":SECONDS,"TLS.time":UNIX,"TLS.sig":HMAC}
//
// (optionally with "TLS.userbuf"), zlib-compressed, then standard base64 with
// '+' -> '*', '/' -> '-' and '=' -> '_'. TLS.sig is the standard base64 of
// HMAC-SHA256(secret key, "TLS.identifier:ID\nTLS.sdkappid:APP\nTLS.time:UNIX\nTLS.expire:SECONDS\n")
// (plus "TLS.userbuf:B\n" when a user buffer is present). A sig is valid until
// TLS.time + TLS.expire.
//
// github.com/tencentyun/tls-sig-api-v2-golang makes sigs but cannot check
// them; this package is the checking half, used by the emulator. Every
// failure is an *Error carrying the public ErrorCode the REST API answers.
package usersig

import (
	"bytes"
	"compress/zlib"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// Public ErrorCodes a failed check answers.
const (
	CodeExpired            = 70001 // TLS.time + TLS.expire is in the past: sign again
	CodeEmpty              = 70002 // no UserSig at all
	CodeUnparsable         = 70003 // not base64, not zlib, not the JSON document, or a field missing or mistyped
	CodeSigMismatch        = 70009 // the HMAC does not match: signed with another key
	CodeIdentifierMismatch = 70013 // the request's identifier differs from TLS.identifier
	CodeSDKAppIDMismatch   = 70014 // the request's sdkappid differs from TLS.sdkappid
)

// Size limits that keep a hostile sig from costing memory.
const (
	// MaxSigLen is the longest UserSig accepted, in bytes, before decoding.
	MaxSigLen = 8 << 10
	// MaxInflated is the most bytes a sig may inflate to.
	MaxInflated = 16 << 10
)

// Error is a refused UserSig. Code is the public ErrorCode to answer; Reason
// says what was wrong and never holds the sig or the key.
type Error struct {
	Code   int
	Reason string
}

func (e *Error) Error() string { return fmt.Sprintf("usersig: %s (ErrorCode %d)", e.Reason, e.Code) }

// CodeOf returns the ErrorCode of err if it is (or wraps) an *Error, else 0.
func CodeOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

func fail(code int, format string, args ...any) error {
	return &Error{Code: code, Reason: fmt.Sprintf(format, args...)}
}

// Claims is the content of a decoded UserSig.
type Claims struct {
	Version    string // TLS.ver, "2.0" for sigs made by tls-sig-api-v2
	Identifier string // TLS.identifier
	SDKAppID   uint64 // TLS.sdkappid
	Time       int64  // TLS.time, Unix seconds when the sig was made
	Expire     int64  // TLS.expire, seconds of validity
	UserBuf    string // TLS.userbuf (base64) when present, else ""
	HasUserBuf bool
	Sig        string // TLS.sig, base64 HMAC
}

// ExpiresAt is the instant after which the sig is refused with CodeExpired.
func (c Claims) ExpiresAt() time.Time {
	if c.Expire > math.MaxInt64-c.Time {
		return time.Unix(math.MaxInt64/2, 0) // effectively never
	}
	return time.Unix(c.Time+c.Expire, 0)
}

// Parse decodes sig without checking the signature or expiry. It fails with
// CodeEmpty for "" and CodeUnparsable for anything that is not a UserSig.
func Parse(sig string) (Claims, error) {
	var c Claims
	if sig == "" {
		return c, fail(CodeEmpty, "UserSig is empty")
	}
	if len(sig) > MaxSigLen {
		return c, fail(CodeUnparsable, "UserSig is longer than %d bytes", MaxSigLen)
	}
	r := strings.NewReplacer("*", "+", "-", "/", "_", "=")
	compressed, err := base64.StdEncoding.DecodeString(r.Replace(sig))
	if err != nil {
		return c, fail(CodeUnparsable, "UserSig is not base64")
	}
	zr, err := zlib.NewReader(bytes.NewReader(compressed))
	if err != nil {
		return c, fail(CodeUnparsable, "UserSig is not zlib data")
	}
	doc, err := io.ReadAll(io.LimitReader(zr, MaxInflated+1))
	if err != nil {
		return c, fail(CodeUnparsable, "UserSig is not valid zlib data")
	}
	if len(doc) > MaxInflated {
		return c, fail(CodeUnparsable, "UserSig inflates to more than %d bytes", MaxInflated)
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil || m == nil {
		return c, fail(CodeUnparsable, "UserSig does not hold a JSON object")
	}
	if dec.More() {
		return c, fail(CodeUnparsable, "UserSig holds data after the JSON object")
	}
	str := func(name string, required bool) (string, bool, error) {
		v, ok := m[name]
		if !ok {
			if required {
				return "", false, fail(CodeUnparsable, "UserSig lacks %s", name)
			}
			return "", false, nil
		}
		s, ok := v.(string)
		if !ok {
			return "", false, fail(CodeUnparsable, "UserSig field %s is not a string", name)
		}
		return s, true, nil
	}
	integer := func(name string) (int64, error) {
		v, ok := m[name]
		if !ok {
			return 0, fail(CodeUnparsable, "UserSig lacks %s", name)
		}
		n, ok := v.(json.Number)
		if !ok {
			return 0, fail(CodeUnparsable, "UserSig field %s is not a number", name)
		}
		i, err := strconv.ParseInt(n.String(), 10, 64)
		if err != nil {
			return 0, fail(CodeUnparsable, "UserSig field %s is not an integer", name)
		}
		return i, nil
	}
	if c.Version, _, err = str("TLS.ver", false); err != nil {
		return c, err
	}
	if c.Identifier, _, err = str("TLS.identifier", true); err != nil {
		return c, err
	}
	if c.Sig, _, err = str("TLS.sig", true); err != nil {
		return c, err
	}
	if c.UserBuf, c.HasUserBuf, err = str("TLS.userbuf", false); err != nil {
		return c, err
	}
	app, err := integer("TLS.sdkappid")
	if err != nil {
		return c, err
	}
	if app < 0 {
		return c, fail(CodeUnparsable, "UserSig field TLS.sdkappid is negative")
	}
	c.SDKAppID = uint64(app)
	if c.Time, err = integer("TLS.time"); err != nil {
		return c, err
	}
	if c.Expire, err = integer("TLS.expire"); err != nil {
		return c, err
	}
	if c.Time < 0 || c.Expire < 0 {
		return c, fail(CodeUnparsable, "UserSig TLS.time or TLS.expire is negative")
	}
	return c, nil
}

// Verify decodes sig, checks its HMAC against key (CodeSigMismatch) and its
// expiry against now (CodeExpired), and returns its claims. It does not
// compare identifier or SDKAppID: see Check.
func Verify(sig, key string, now time.Time) (Claims, error) {
	c, err := Parse(sig)
	if err != nil {
		return c, err
	}
	if err := verifyMAC(c, key); err != nil {
		return c, err
	}
	if now.After(c.ExpiresAt()) {
		return c, fail(CodeExpired, "UserSig expired at %s", c.ExpiresAt().UTC().Format(time.RFC3339))
	}
	return c, nil
}

// Check is what the REST API does with a request's usersig: it decodes the
// sig and then checks, in order, that TLS.identifier equals identifier
// (CodeIdentifierMismatch), that TLS.sdkappid equals sdkappid
// (CodeSDKAppIDMismatch), that the HMAC matches key (CodeSigMismatch) and
// that the sig has not expired at now (CodeExpired).
func Check(sig, key string, sdkappid uint64, identifier string, now time.Time) error {
	c, err := Parse(sig)
	if err != nil {
		return err
	}
	if c.Identifier != identifier {
		return fail(CodeIdentifierMismatch, "UserSig was made for another identifier")
	}
	if c.SDKAppID != sdkappid {
		return fail(CodeSDKAppIDMismatch, "UserSig was made for SDKAppID %d", c.SDKAppID)
	}
	if err := verifyMAC(c, key); err != nil {
		return err
	}
	if now.After(c.ExpiresAt()) {
		return fail(CodeExpired, "UserSig expired at %s", c.ExpiresAt().UTC().Format(time.RFC3339))
	}
	return nil
}

// mac is the HMAC a sig with these claims must carry, in standard base64.
func mac(c Claims, key string) string {
	var b strings.Builder
	b.WriteString("TLS.identifier:" + c.Identifier + "\n")
	b.WriteString("TLS.sdkappid:" + strconv.FormatUint(c.SDKAppID, 10) + "\n")
	b.WriteString("TLS.time:" + strconv.FormatInt(c.Time, 10) + "\n")
	b.WriteString("TLS.expire:" + strconv.FormatInt(c.Expire, 10) + "\n")
	if c.HasUserBuf {
		b.WriteString("TLS.userbuf:" + c.UserBuf + "\n")
	}
	h := hmac.New(sha256.New, []byte(key))
	h.Write([]byte(b.String()))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

func verifyMAC(c Claims, key string) error {
	if !hmac.Equal([]byte(mac(c, key)), []byte(c.Sig)) {
		return fail(CodeSigMismatch, "UserSig signature does not match the secret key")
	}
	return nil
}

// Sign makes a sig with the given claims (Version defaults to "2.0"; Sig is
// computed). It exists for tests that need a sig with a chosen TLS.time,
// which tencentyun.GenUserSig cannot make; production code signs with
// tencentyun.GenUserSig.
func Sign(c Claims, key string) string {
	if c.Version == "" {
		c.Version = "2.0"
	}
	doc := map[string]any{
		"TLS.ver":        c.Version,
		"TLS.identifier": c.Identifier,
		"TLS.sdkappid":   c.SDKAppID,
		"TLS.time":       c.Time,
		"TLS.expire":     c.Expire,
		"TLS.sig":        mac(c, key),
	}
	if c.HasUserBuf {
		doc["TLS.userbuf"] = c.UserBuf
	}
	data, _ := json.Marshal(doc) // cannot fail: strings and integers only
	var b bytes.Buffer
	w := zlib.NewWriter(&b)
	_, _ = w.Write(data)
	_ = w.Close()
	r := strings.NewReplacer("+", "*", "/", "-", "=", "_")
	return r.Replace(base64.StdEncoding.EncodeToString(b.Bytes()))
}
