package bulk_test

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/timq/timq/internal/bulk"
	"github.com/timq/timq/tasks"
)

func TestParseLineValid(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		line  string
		typ   string
		sizes []int // recall parts
	}{
		{`{"op":"clear","GroupId":"@TGS#2J4SZEAEL"}`, tasks.TypeClear, nil},
		{`  {"GroupId":"g","MsgSeq":5,"op":"clear"}  `, tasks.TypeClear, nil},
		{`{"op":"recall","GroupId":"g","MsgSeqList":[{"MsgSeq":100},{"MsgSeq":101}]}`, tasks.TypeRecall, []int{2}},
		{`{"op":"recall","GroupId":"g","MsgSeqList":[` + seqList(1, 23) + `],"Reason":"r"}`, tasks.TypeRecall, []int{10, 10, 3}},
		{`{"op":"modify","GroupId":"g","MsgSeq":7,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"hi"}}]}`, tasks.TypeModify, nil},
		{`{"op":"modify","GroupId":"g","MsgSeq":7,"CloudCustomData":""}`, tasks.TypeModify, nil},
	} {
		parts, err := bulk.ParseLine([]byte(tc.line))
		if err != nil {
			t.Errorf("ParseLine(%s) = %v", tc.line, err)
			continue
		}
		if len(parts) == 0 || parts[0].TaskType() != tc.typ {
			t.Errorf("ParseLine(%s) = %#v, want a %s", tc.line, parts, tc.typ)
			continue
		}
		if tc.sizes != nil {
			var sizes []int
			for _, p := range parts {
				sizes = append(sizes, len(p.(tasks.Recall).MsgSeqList))
			}
			if !equalInts(sizes, tc.sizes) {
				t.Errorf("ParseLine(%s): parts of %v, want %v", tc.line, sizes, tc.sizes)
			}
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestParseLineSkipped(t *testing.T) {
	t.Parallel()
	for _, line := range []string{"", "   ", "\t", "# a comment", "   # indented comment", "#{\"op\":\"clear\"}"} {
		parts, err := bulk.ParseLine([]byte(line))
		if parts != nil || err != nil || !bulk.Skipped([]byte(line)) {
			t.Errorf("ParseLine(%q) = %v, %v; want a skipped line", line, parts, err)
		}
	}
}

func TestParseLineRejects(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		line   string
		field  string
		reason string
	}{
		{`{"GroupId":"g"}`, "op", "is required"},
		{`{"op":null,"GroupId":"g"}`, "op", "is required"},
		{`{"op":"delete","GroupId":"g"}`, "op", `not "delete"`},
		{`{"op":5}`, "op", "must be string, not number"},
		{`not json`, "JSON", "invalid character"},
		{`[1,2]`, "JSON", "must be an object"},
		{`{"op":"clear","GroupId":"g"`, "JSON", "not a complete JSON object"},
		{`{"op":"clear","GroupId":"g"} {}`, "JSON", "data after the JSON object"},
		{`{"op":"clear","GroupId":"g","MsgSeqList":[{"MsgSeq":1}]}`, "MsgSeqList", "not a field of this operation"},
		{`{"op":"recall","GroupId":"g","MsgSeqList":[{"MsgSeq":1,"Seq":2}]}`, "Seq", "not a field"},
		{`{"op":"clear","GroupId":""}`, "GroupId", "is required"},
		{`{"op":"clear","GroupId":"g","MsgSeq":0}`, "MsgSeq", "at least 1"},
		{`{"op":"clear","GroupId":"g","MsgSeq":"5"}`, "MsgSeq", "must be uint64, not string"},
		{`{"op":"recall","GroupId":"g","MsgSeqList":[{"MsgSeq":1},{"MsgSeq":2},{"MsgSeq":0}]}`, "MsgSeqList[2].MsgSeq", "must be at least 1"},
		{`{"op":"recall","GroupId":"g","MsgSeqList":[` + seqList(1, 14) + `,{"MsgSeq":0}]}`, "MsgSeqList[14].MsgSeq", "must be at least 1"},
		{`{"op":"recall","GroupId":"g","MsgSeqList":[` + seqList(1, 14) + `,{"MsgSeq":3}]}`, "MsgSeqList[14].MsgSeq", "repeats MsgSeqList[2] (3)"},
		{`{"op":"recall","GroupId":"g","MsgSeqList":[]}`, "MsgSeqList", "at least one"},
		{`{"op":"modify","GroupId":"g","MsgSeq":1}`, "MsgBody", "or CloudCustomData is required"},
		{`{"op":"modify","GroupId":"g","MsgSeq":1,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{}}]}`, "MsgBody[0].MsgContent.Text", "is required"},
		{strings.Repeat(" ", bulk.MaxLineBytes+1), "JSON", "more than the 1048576 allowed"},
	} {
		parts, err := bulk.ParseLine([]byte(tc.line))
		ve, ok := err.(*tasks.ValidationError)
		if !ok || parts != nil {
			t.Errorf("ParseLine(%.80s) = %v, %v (%T); want a *tasks.ValidationError", tc.line, parts, err, err)
			continue
		}
		if ve.Field != tc.field || !strings.Contains(ve.Reason, tc.reason) {
			t.Errorf("ParseLine(%.80s) = %q; want field %q and a reason with %q", tc.line, err, tc.field, tc.reason)
		}
	}
}

func TestLineError(t *testing.T) {
	t.Parallel()
	err := error(&bulk.LineError{Line: 17, Err: &tasks.ValidationError{Field: "MsgSeqList[2].MsgSeq", Reason: "must be at least 1"}})
	if got, want := err.Error(), "line 17: MsgSeqList[2].MsgSeq: must be at least 1"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	var ve *tasks.ValidationError
	if !errors.As(err, &ve) || ve.Field != "MsgSeqList[2].MsgSeq" {
		t.Errorf("errors.As did not find the ValidationError")
	}
}

// FuzzParseLine checks that ParseLine never panics, returns only
// *tasks.ValidationError, and that what it accepts is valid.
func FuzzParseLine(f *testing.F) {
	for _, s := range []string{
		`{"op":"clear","GroupId":"@TGS#2J4SZEAEL"}`,
		`{"op":"clear","GroupId":"g","MsgSeq":3}`,
		`{"op":"recall","GroupId":"g","MsgSeqList":[{"MsgSeq":100},{"MsgSeq":101}],"TopicId":"t","Reason":"r"}`,
		`{"op":"recall","GroupId":"g","MsgSeqList":[` + seqList(1, 12) + `]}`,
		`{"op":"modify","GroupId":"g","MsgSeq":7,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"hi"}}]}`,
		`{"op":"modify","GroupId":"g","MsgSeq":7,"CloudCustomData":"x"}`,
		`# comment`, ``, `{}`, `[]`, `null`, `{"op":"x"}`, `{"op":"clear"}{}`, "\xEF\xBB\xBF{}",
		"{\"op\":\"clear\",\"GroupId\":\"a\xffb\"}", `{"op":"clear","GroupId":"a\ud800"}`, `{"op":"clear","OP":"recall","GroupId":"g"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		parts, err := bulk.ParseLine(line)
		if err != nil {
			if _, ok := err.(*tasks.ValidationError); !ok {
				t.Fatalf("error %v is a %T, want *tasks.ValidationError", err, err)
			}
			if parts != nil {
				t.Fatalf("parts %v returned with an error", parts)
			}
			return
		}
		if bulk.Skipped(line) != (len(parts) == 0) {
			t.Fatalf("Skipped = %v but ParseLine gave %d parts", bulk.Skipped(line), len(parts))
		}
		if len(parts) > 0 && !utf8.Valid(line) {
			t.Fatalf("accepted a line that is not valid UTF-8")
		}
		for _, p := range parts {
			if err := p.Validate(); err != nil {
				t.Fatalf("accepted part is invalid: %v", err)
			}
			if _, err := tasks.NewTask(p); err != nil {
				t.Fatalf("NewTask of an accepted part: %v", err)
			}
		}
	})
}

// seqList returns n MsgSeqList items from "from" on, without brackets.
func seqList(from, n int) string {
	var b bytes.Buffer
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"MsgSeq":`)
		b.WriteString(strconv.Itoa(from + i))
		b.WriteByte('}')
	}
	return b.String()
}

// TestParseLineRejectsChangedText covers lines that encoding/json would
// quietly change: invalid UTF-8 and lone surrogates (turned into U+FFFD),
// and repeated keys, case variants included (the last one would win).
func TestParseLineRejectsChangedText(t *testing.T) {
	t.Parallel()
	const lone = ": half a UTF-16 surrogate pair without the other half, which is not a character"
	text := func(s string) string {
		return `{"op":"modify","GroupId":"g","MsgSeq":7,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"` + s + `"}}]}`
	}
	for _, tc := range []struct {
		line   string
		field  string
		reason string
	}{
		// Invalid UTF-8.
		{"{\"op\":\"clear\",\"GroupId\":\"@TGS#inv\xffalid\"}", "GroupId", "is not valid UTF-8"},
		{"{\"op\":\"clear\",\"GroupId\":\"@TGS#\xc0\xaf\"}", "GroupId", "is not valid UTF-8"},     // overlong "/"
		{"{\"op\":\"clear\",\"GroupId\":\"@TGS#\xed\xa0\x80\"}", "GroupId", "is not valid UTF-8"}, // encoded surrogate
		{"{\"op\":\"cl\xffear\",\"GroupId\":\"g\"}", "op", "is not valid UTF-8"},
		{text("caf\xe9"), "MsgBody[0].MsgContent.Text", "is not valid UTF-8"}, // Latin-1
		{"{\"op\":\"recall\",\"GroupId\":\"g\",\"MsgSeqList\":[\"\xff\"]}", "MsgSeqList[0]", "is not valid UTF-8"},
		{"{\"op\":\"clear\",\"Group\xffId\":\"g\"}", "JSON", `has the key "Group\xffId", which is not valid UTF-8`},
		{"{\"op\":\"clear\",\"GroupId\":\"g\"} \xfe", "JSON", "is not valid UTF-8 (byte 30 is 0xfe)"},
		{"{\"op\":\"clear\",\xff}", "JSON", "is not valid UTF-8 (byte 15 is 0xff)"},
		{"\xff", "JSON", "is not valid UTF-8 (byte 1 is 0xff)"},
		// Escaped lone surrogates.
		{`{"op":"clear","GroupId":"@TGS#inv\udfffalid"}`, "GroupId", `has \udfff` + lone},
		{`{"op":"clear","GroupId":"a\uD800"}`, "GroupId", `has \uD800` + lone},
		{`{"op":"clear","GroupId":"a\ud800\u0041"}`, "GroupId", `has \ud800` + lone},
		{`{"op":"clear","GroupId":"a\udc00\ud800"}`, "GroupId", `has \udc00` + lone},
		{`{"op":"clear","GroupId":"a\ud83d\ude00\ud83d"}`, "GroupId", `has \ud83d` + lone},
		{text(`\\\ud800`), "MsgBody[0].MsgContent.Text", `has \ud800` + lone},
		{`{"op":"clear","GroupId":"g","\ud800":1}`, "JSON", `has the key "\ud800", with \ud800` + lone},
		// Repeated keys, at any depth, compared ignoring case.
		{`{"op":"clear","OP":"recall","GroupId":"@TGS#Op2","MsgSeqList":[{"MsgSeq":1}]}`, "JSON", `duplicate key "OP" (also "op")`},
		{`{"op":"clear","GroupId":"a","groupid":"b"}`, "JSON", `duplicate key "groupid" (also "GroupId")`},
		{`{"op":"clear","GroupId":"a","GroupId":"a"}`, "JSON", `duplicate key "GroupId" (also "GroupId")`},
		{`{"op":"clear","GroupId":"a","op":"clear"}`, "JSON", `duplicate key "op" (also "op")`},
		{`{"op":"clear","\u004fP":"recall","GroupId":"g"}`, "JSON", `duplicate key "OP" (also "op")`},            // escaped
		{`{"op":"clear","GroupId":"g","MsgSeq":1,"MſgSeq":2}`, "JSON", `duplicate key "MſgSeq" (also "MsgSeq")`}, // ſ folds to s
		{`{"op":"drop","OP":"clear","GroupId":"g"}`, "JSON", `duplicate key "OP" (also "op")`},                   // before the op check
		{`{"op":5,"Op":"clear","GroupId":"g"}`, "JSON", `duplicate key "Op" (also "op")`},                        // before the type check
		{`{"op":"recall","GroupId":"g","MsgSeqList":[{"MsgSeq":1},{"MsgSeq":2,"msgseq":3}]}`, "MsgSeqList[1]", `duplicate key "msgseq" (also "MsgSeq")`},
		{`{"op":"modify","GroupId":"g","MsgSeq":7,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"a","Text":"b"}}]}`, "MsgBody[0].MsgContent", `duplicate key "Text" (also "Text")`},
		{`{"op":"modify","GroupId":"g","MsgSeq":7,"MsgBody":[{"MsgType":"TIMTextElem","msgtype":"TIMFaceElem","MsgContent":{"Text":"a"}}]}`, "MsgBody[0]", `duplicate key "msgtype" (also "MsgType")`},
		{`{"op":"modify","GroupId":"g","MsgSeq":7,"MsgBody":[{"MsgType":"TIMCustomElem","MsgContent":{"Data":{"a":{"b":1,"B":2}}}}]}`, "MsgBody[0].MsgContent.Data.a", `duplicate key "B" (also "b")`},
		{`{"op":"modify","GroupId":"g","MsgSeq":7,"MsgBody":[{"MsgType":"TIMCustomElem","MsgContent":{` + manyKeys(40) + `,"K17":1}}]}`, "MsgBody[0].MsgContent", `duplicate key "K17" (also "k17")`},
	} {
		parts, err := bulk.ParseLine([]byte(tc.line))
		ve, ok := err.(*tasks.ValidationError)
		if !ok || parts != nil {
			t.Errorf("ParseLine(%q) = %v, %v (%T); want a *tasks.ValidationError", tc.line, parts, err, err)
			continue
		}
		if ve.Field != tc.field || ve.Reason != tc.reason {
			t.Errorf("ParseLine(%q):\n got %s: %s\nwant %s: %s", tc.line, ve.Field, ve.Reason, tc.field, tc.reason)
		}
	}
}

// TestParseLineKeepsText checks that valid text, multi-byte and escaped,
// passes through unchanged, and that the same key in different objects is
// no repeat.
func TestParseLineKeepsText(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		line    string
		group   string
		content string // the MsgContent of a modify
	}{
		{`{"op":"clear","GroupId":"@TGS#中文群"}`, "@TGS#中文群", ""},
		{`{"op":"clear","GroupId":"@TGS#\u4e2d\u6587"}`, "@TGS#中文", ""},
		{`{"op":"clear","GroupId":"@TGS#\ud83d\ude00"}`, "@TGS#😀", ""}, // a surrogate pair
		{`{"op":"clear","GroupId":"@TGS#😀�"}`, "@TGS#😀\uFFFD", ""},     // U+FFFD as such is a character
		{`{"op":"clear","GroupId":"@TGS#\ufffd"}`, "@TGS#\uFFFD", ""},
		{`{"op":"clear","\u0047roupId":"g"}`, "g", ""},
		{`{"op":"modify","GroupId":"g","MsgSeq":7,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"你好，世界 😀 é"}}]}`,
			"g", `{"Text":"你好，世界 😀 é"}`},
		{`{"op":"modify","GroupId":"g","MsgSeq":7,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"a\\ud800 \ud83d\ude00"}}]}`,
			"g", `{"Text":"a\\ud800 \ud83d\ude00"}`}, // "\\" then "ud800" is no escape
		{`{"op":"modify","GroupId":"g","MsgSeq":7,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"a"}},{"MsgType":"TIMTextElem","MsgContent":{"Text":"b"}}]}`,
			"g", `{"Text":"a"}`},
	} {
		parts, err := bulk.ParseLine([]byte(tc.line))
		if err != nil || len(parts) != 1 {
			t.Errorf("ParseLine(%s) = %v, %v; want one part", tc.line, parts, err)
			continue
		}
		switch p := parts[0].(type) {
		case tasks.Clear:
			if p.GroupId != tc.group {
				t.Errorf("ParseLine(%s): GroupId %q, want %q", tc.line, p.GroupId, tc.group)
			}
		case tasks.Modify:
			if p.GroupId != tc.group || string(p.MsgBody[0].MsgContent) != tc.content {
				t.Errorf("ParseLine(%s): GroupId %q, MsgContent %s; want %q, %s", tc.line, p.GroupId, p.MsgBody[0].MsgContent, tc.group, tc.content)
			}
		default:
			t.Errorf("ParseLine(%s) = %#v", tc.line, p)
		}
	}
	// The same key in each MsgSeqList entry is no repeat.
	parts, err := bulk.ParseLine([]byte(`{"op":"recall","GroupId":"g","MsgSeqList":[` + seqList(1, 3) + `]}`))
	if err != nil || len(parts) != 1 || len(parts[0].(tasks.Recall).MsgSeqList) != 3 {
		t.Errorf("ParseLine of 3 MsgSeqList entries = %v, %v", parts, err)
	}
}

// manyKeys returns n JSON members "k0":0, "k1":1, ..., without braces.
func manyKeys(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"k%d":%d`, i, i)
	}
	return b.String()
}

func BenchmarkParseLine(b *testing.B) {
	for _, bc := range []struct{ name, line string }{
		{"clear", `{"op":"clear","GroupId":"@TGS#2J4SZEAEL","MsgSeq":120}`},
		{"recall", `{"op":"recall","GroupId":"@TGS#2J4SZEAEL","MsgSeqList":[` + seqList(100, 20) + `]}`},
		{"modify", `{"op":"modify","GroupId":"@TGS#2J4SZEAEL","MsgSeq":7,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"你好，世界"}}]}`},
	} {
		line := []byte(bc.line)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(line)))
			for b.Loop() {
				if _, err := bulk.ParseLine(line); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
