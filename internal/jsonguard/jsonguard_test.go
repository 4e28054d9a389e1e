package jsonguard

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
)

// TestFoldKey checks that foldKey(x) == foldKey(y) exactly when
// bytes.EqualFold(x, y), the rule the map of a many-key object relies on.
func TestFoldKey(t *testing.T) {
	t.Parallel()
	keys := []string{"k", "K", "\u212a", "s", "S", "\u017f", "ß", "ẞ", "σ", "Σ", "ς", "op", "OP", "Op", "oP", "ǅ", "ǆ", "Ǆ", "中", "", "MsgSeq", "MſgSeq", "msgseq"}
	for _, x := range keys {
		for _, y := range keys {
			if got, want := foldKey([]byte(x)) == foldKey([]byte(y)), bytes.EqualFold([]byte(x), []byte(y)); got != want {
				t.Errorf("foldKey(%q) == foldKey(%q) is %v, but EqualFold is %v", x, y, got, want)
			}
		}
	}
}

// TestCheckTextManyKeys covers objects past manyKeys, which are checked
// through a map, and that the keys of a closed object are forgotten.
func TestCheckTextManyKeys(t *testing.T) {
	t.Parallel()
	members := func(from, n int, upper bool) string {
		var b strings.Builder
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			k := "k"
			if upper {
				k = "K"
			}
			fmt.Fprintf(&b, `"%s%d":%d`, k, from+i, i)
		}
		return b.String()
	}
	for _, tc := range []struct {
		json, want string
	}{
		{`{` + members(0, 100, false) + `}`, ""},
		{`{"a":{` + members(0, 100, false) + `},"b":{` + members(0, 100, true) + `}}`, ""},
		{`{` + members(0, manyKeys, false) + `,"K0":1}`, `JSON: duplicate key "K0" (also "k0")`},
		{`{` + members(0, manyKeys+1, false) + `,"K0":1}`, `JSON: duplicate key "K0" (also "k0")`},
		{`{` + members(0, 100, false) + `,"K99":1}`, `JSON: duplicate key "K99" (also "k99")`},
		{`{"x":[1,{` + members(0, 60, false) + `,"K\u017f":1,"ks":2}]}`, `x[1]: duplicate key "ks" (also "Kſ")`},
		{`[{"a":1},{"a":2},{"A":3,"b":[],"a":4}]`, `[2]: duplicate key "a" (also "A")`},
	} {
		var got string
		if ve := Check([]byte(tc.json)); ve != nil {
			got = ve.Error()
		}
		if got != tc.want {
			t.Errorf("Check(%.60s...) = %q, want %q", tc.json, got, tc.want)
		}
	}
}

func BenchmarkCheckText(b *testing.B) {
	line := []byte(`{"op":"recall","GroupId":"@TGS#2J4SZEAEL","MsgSeqList":[{"MsgSeq":1},{"MsgSeq":2},{"MsgSeq":3},{"MsgSeq":4},{"MsgSeq":5},{"MsgSeq":6},{"MsgSeq":7},{"MsgSeq":8},{"MsgSeq":9},{"MsgSeq":10}],"Reason":"spam"}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		if ve := Check(line); ve != nil {
			b.Fatal(ve)
		}
	}
}

// FuzzCheckText checks that Check never panics and, on valid JSON,
// finds a repeated key exactly when a walk of json.Decoder tokens does.
func FuzzCheckText(f *testing.F) {
	for _, s := range []string{
		`{"op":"clear","GroupId":"g"}`, `{"op":"clear","OP":"recall"}`, `{"a":[{"b":1},{"b":2,"B":3}]}`,
		`{"\u004fP":1,"op":2}`, `{"a\\ud800":1}`, `{"MſgSeq":1,"msgseq":2}`, `["\ud83d\ude00",{"x":"\ud800"}]`,
		`{"k":1,` + strings.Repeat(`"k":1,`, 40) + `"z":1}`, "{\"a\":\"\xff\"}", `"str"`, `{}`, `[]`, `{"a":`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		ve := Check(line)
		if !json.Valid(line) || (ve != nil && !strings.HasPrefix(ve.Reason, "duplicate key ")) {
			return
		}
		if got, want := ve != nil, hasRepeatedKey(t, line); got != want {
			t.Fatalf("Check(%q) = %v; json.Decoder finds a repeated key: %v", line, ve, want)
		}
	})
}

// hasRepeatedKey reports whether an object in the valid JSON line repeats
// a key, walking json.Decoder tokens.
func hasRepeatedKey(t *testing.T, line []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber() // no overflow of float64
	type open struct {
		object, wantKey bool
		keys            []string
	}
	var stack []open
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return false
		}
		if err != nil {
			t.Fatalf("Token: %v", err)
		}
		top := len(stack) - 1
		switch tok := tok.(type) {
		case json.Delim:
			switch tok {
			case '{', '[':
				if top >= 0 && stack[top].object {
					stack[top].wantKey = true
				}
				stack = append(stack, open{object: tok == '{', wantKey: true})
			default:
				stack = stack[:top]
			}
			continue
		case string:
			if top >= 0 && stack[top].object && stack[top].wantKey {
				for _, k := range stack[top].keys {
					if strings.EqualFold(k, tok) {
						return true
					}
				}
				stack[top].keys = append(stack[top].keys, tok)
				stack[top].wantKey = false
				continue
			}
		}
		if top >= 0 && stack[top].object {
			stack[top].wantKey = true
		}
	}
}
