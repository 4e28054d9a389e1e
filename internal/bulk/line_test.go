package bulk_test

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"

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
