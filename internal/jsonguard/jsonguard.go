// Package jsonguard finds what encoding/json would change in a JSON text
// without a word, so that a caller can refuse the text instead: invalid
// UTF-8 and escaped lone UTF-16 surrogates ("\ud800"), which encoding/json
// turns into U+FFFD, and an object that repeats a key, which encoding/json
// matches to struct fields ignoring case and lets the later key win. So
// {"op":"clear","OP":"recall",...} would decode as a recall, and a GroupId
// with a stray byte would name another group.
package jsonguard

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Error names where a JSON text is wrong and why. Field is "JSON" for the
// text as a whole or its top level, else a path such as "GroupId",
// "MsgSeqList[2]" or "MsgBody[0].MsgContent".
type Error struct {
	Field  string
	Reason string
}

func (e *Error) Error() string { return e.Field + ": " + e.Reason }

// manyKeys is how many keys an object may hold before Check looks its
// keys up in a map instead of comparing each new key with every earlier one.
const manyKeys = 32

// textChecker walks one JSON value, keeping the open objects and arrays.
type textChecker struct {
	line     []byte
	validUTF bool     // the whole line is valid UTF-8
	frames   []frame  // the open objects and arrays, outermost first
	keys     [][]byte // the keys of the open objects, unescaped, in order
}

// frame is an open object or array.
type frame struct {
	object bool
	index  int            // arrays: the index of the current element
	key    []byte         // objects: the current key
	first  int            // objects: where the object's keys start in keys
	folded map[string]int // objects of more than manyKeys keys: folded key -> index in keys
}

// Check checks the first JSON value of line, which must be syntactically
// valid JSON (Check stops, reporting nothing, at anything it does not
// expect). It returns the first of these, in the order they appear:
//
//   - a string that is not valid UTF-8: Field is the path of the value
//     ("GroupId", "MsgBody[0].MsgContent.Text"), or of the object holding
//     the key;
//   - a string holding an escaped UTF-16 surrogate without its other half
//     ("\ud800"), which is not a character;
//   - an object that repeats a key, comparing keys as encoding/json matches
//     them to fields (after unescaping, ignoring case as bytes.EqualFold
//     does): Field is the path of the object, or "JSON" for the line's top
//     level, and Reason reads like `duplicate key "OP" (also "op")`.
//
// When there is none of these but line is not valid UTF-8 (outside the
// strings of the value, such as in data after it), it returns the error of
// NotUTF8. Otherwise it returns nil.
func Check(line []byte) *Error {
	c := &textChecker{line: line, validUTF: utf8.Valid(line)}
	ve := c.run()
	if ve == nil && !c.validUTF {
		ve = NotUTF8(line) // outside the strings of the value
	}
	return ve
}

func (c *textChecker) run() *Error {
	line := c.line
	expectKey := false // the next string is a key of the innermost object
	for i := 0; i < len(line); {
		switch line[i] {
		case ' ', '\t', '\r', '\n', ':':
			i++
		case '{':
			c.frames = append(c.frames, frame{object: true, first: len(c.keys)})
			expectKey = true
			i++
		case '[':
			c.frames = append(c.frames, frame{})
			expectKey = false
			i++
		case '}', ']':
			if len(c.frames) == 0 {
				return nil
			}
			if f := c.frames[len(c.frames)-1]; f.object {
				c.keys = c.keys[:f.first]
			}
			c.frames = c.frames[:len(c.frames)-1]
			if len(c.frames) == 0 {
				return nil // the end of the value
			}
			expectKey = false
			i++
		case ',':
			if len(c.frames) == 0 {
				return nil
			}
			if f := &c.frames[len(c.frames)-1]; f.object {
				expectKey = true
			} else {
				f.index++
			}
			i++
		case '"':
			isKey := expectKey && len(c.frames) > 0 && c.frames[len(c.frames)-1].object
			end, escaped, lone := scanString(line, i)
			if end < 0 {
				return nil // not a complete string
			}
			raw := line[i+1 : end]
			switch {
			case isKey && lone != nil:
				return &Error{Field: c.path(len(c.frames) - 1), Reason: fmt.Sprintf("has the key %s, with %s: %s", line[i:end+1], lone, loneReason)}
			case lone != nil:
				return &Error{Field: c.path(len(c.frames)), Reason: fmt.Sprintf("has %s: %s", lone, loneReason)}
			case isKey:
				if ve := c.addKey(line[i:end+1], escaped); ve != nil {
					return ve
				}
				expectKey = false
			case !c.validUTF && !utf8.Valid(raw):
				return &Error{Field: c.path(len(c.frames)), Reason: "is not valid UTF-8"}
			}
			if len(c.frames) == 0 {
				return nil // the value was a string
			}
			i = end + 1
		default:
			// A number, true, false or null: skip to the next delimiter.
			for i < len(line) && !isDelimiter(line[i]) {
				i++
			}
			if len(c.frames) == 0 {
				return nil
			}
		}
	}
	return nil
}

// loneReason explains an escaped lone surrogate.
const loneReason = "half a UTF-16 surrogate pair without the other half, which is not a character"

func isDelimiter(b byte) bool {
	switch b {
	case ' ', '\t', '\r', '\n', ',', ':', ']', '}':
		return true
	}
	return false
}

// scanString reads the string whose opening quote is line[start]. It
// returns the index of the closing quote (or -1 if there is none), whether
// the string has escapes, and the first escaped lone UTF-16 surrogate
// ("\ud800"), which encoding/json would turn into U+FFFD, or nil.
func scanString(line []byte, start int) (end int, escaped bool, lone []byte) {
	for i := start + 1; i < len(line); i++ {
		switch line[i] {
		case '"':
			return i, escaped, lone
		case '\\':
			escaped = true
			if i+1 < len(line) && line[i+1] != 'u' {
				i++ // the escaped byte
				continue
			}
			r, ok := hex4(line, i+2)
			if !ok {
				return -1, escaped, lone // not JSON; the decoder reports it
			}
			next := i + 6 // after "\uXXXX"
			if utf16.IsSurrogate(r) {
				// As encoding/json: a surrogate must be a high half
				// followed at once by an escaped low half.
				r2, ok2 := rune(0), false
				if next+1 < len(line) && line[next] == '\\' && line[next+1] == 'u' {
					r2, ok2 = hex4(line, next+2)
				}
				if !ok2 || utf16.DecodeRune(r, r2) == unicode.ReplacementChar {
					if lone == nil {
						lone = line[i:next]
					}
				} else {
					next += 6
				}
			}
			i = next - 1 // the loop adds 1
		}
	}
	return -1, escaped, lone
}

// hex4 decodes the four hex digits at line[i:].
func hex4(line []byte, i int) (rune, bool) {
	if i < 0 || i+4 > len(line) {
		return 0, false
	}
	var r rune
	for _, b := range line[i : i+4] {
		switch {
		case '0' <= b && b <= '9':
			r = r<<4 | rune(b-'0')
		case 'a' <= b && b <= 'f':
			r = r<<4 | rune(b-'a'+10)
		case 'A' <= b && b <= 'F':
			r = r<<4 | rune(b-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// addKey records quoted, a key of the innermost object with its quotes,
// reporting a key that is not valid UTF-8 or repeats an earlier one.
func (c *textChecker) addKey(quoted []byte, escaped bool) *Error {
	f := &c.frames[len(c.frames)-1]
	key := quoted[1 : len(quoted)-1]
	if !c.validUTF && !utf8.Valid(key) {
		return &Error{Field: c.path(len(c.frames) - 1), Reason: fmt.Sprintf("has the key %q, which is not valid UTF-8", key)}
	}
	if escaped {
		var s string
		if err := json.Unmarshal(quoted, &s); err != nil {
			return nil // not JSON; the decoder reports it
		}
		key = []byte(s)
	}
	earlier := -1
	if f.folded != nil {
		if j, ok := f.folded[foldKey(key)]; ok {
			earlier = j
		}
	} else {
		for j := f.first; j < len(c.keys); j++ {
			if bytes.EqualFold(c.keys[j], key) {
				earlier = j
				break
			}
		}
	}
	if earlier >= 0 {
		return &Error{
			Field:  c.path(len(c.frames) - 1),
			Reason: fmt.Sprintf("duplicate key %q (also %q)", key, c.keys[earlier]),
		}
	}
	c.keys = append(c.keys, key)
	f.key = key
	switch n := len(c.keys) - f.first; {
	case f.folded != nil:
		f.folded[foldKey(key)] = len(c.keys) - 1
	case n > manyKeys:
		f.folded = make(map[string]int, 2*n)
		for j := f.first; j < len(c.keys); j++ {
			f.folded[foldKey(c.keys[j])] = j
		}
	}
	return nil
}

// path is the Field naming the value inside the first depth open objects
// and arrays: "JSON" for the top level, else like "MsgSeqList[2].MsgSeq".
func (c *textChecker) path(depth int) string {
	var b strings.Builder
	for _, f := range c.frames[:depth] {
		if f.object {
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.Write(f.key)
		} else {
			fmt.Fprintf(&b, "[%d]", f.index)
		}
	}
	if b.Len() == 0 {
		return "JSON"
	}
	return b.String()
}

// foldKey returns key folded so that foldKey(x) == foldKey(y) exactly when
// bytes.EqualFold(x, y): each rune becomes the smallest of its fold set.
func foldKey(key []byte) string {
	out := make([]byte, 0, len(key))
	for i := 0; i < len(key); {
		r, n := utf8.DecodeRune(key[i:])
		i += n
		for {
			r2 := unicode.SimpleFold(r)
			if r2 <= r {
				r = r2
				break
			}
			r = r2
		}
		out = utf8.AppendRune(out, r)
	}
	return string(out)
}

// NotUTF8 returns the error for data that is not valid UTF-8, giving the
// position (from 1) and value of the first bad byte, or nil if data is
// valid.
func NotUTF8(data []byte) *Error {
	if utf8.Valid(data) {
		return nil
	}
	i := 0
	for {
		r, n := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && n == 1 {
			break
		}
		i += n
	}
	return &Error{Field: "JSON", Reason: fmt.Sprintf("is not valid UTF-8 (byte %d is %#x)", i+1, data[i])}
}
