package tasks_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/timq/timq/tasks"
)

func TestParseValid(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		typ     string
		payload string
		want    tasks.Payload
	}{
		{tasks.TypeClear, `{"GroupId":"@TGS#2J4SZEAEL"}`, tasks.Clear{GroupId: group}},
		{tasks.TypeClear, `{"GroupId":"@TGS#2J4SZEAEL","MsgSeq":42}`, tasks.Clear{GroupId: group, MsgSeq: seq(42)}},
		{tasks.TypeClear, " \n{\"GroupId\":\"g\"}\n\t ", tasks.Clear{GroupId: "g"}},
		{tasks.TypeRecall, `{"GroupId":"g","MsgSeqList":[{"MsgSeq":1},{"MsgSeq":2}],"TopicId":"t","Reason":"spam"}`,
			tasks.Recall{GroupId: "g", MsgSeqList: seqs(1, 2), TopicId: "t", Reason: "spam"}},
		{tasks.TypeModify, `{"GroupId":"g","MsgSeq":3,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"hi"}}]}`,
			tasks.Modify{GroupId: "g", MsgSeq: 3, MsgBody: tasks.TextBody("hi")}},
		{tasks.TypeModify, `{"GroupId":"g","MsgSeq":3,"CloudCustomData":""}`,
			tasks.Modify{GroupId: "g", MsgSeq: 3, CloudCustomData: str("")}},
	} {
		got, err := tasks.Parse(tc.typ, []byte(tc.payload))
		if err != nil {
			t.Errorf("Parse(%s, %s) = %v", tc.typ, tc.payload, err)
			continue
		}
		if !reflect.DeepEqual(normalize(t, got), normalize(t, tc.want)) {
			t.Errorf("Parse(%s, %s) = %#v, want %#v", tc.typ, tc.payload, got, tc.want)
		}
	}
}

// normalize encodes p, so that RawMessage contents compare by their compact form.
func normalize(t *testing.T, p tasks.Payload) string {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return reflect.TypeOf(p).String() + string(b)
}

func TestParseTyped(t *testing.T) {
	t.Parallel()
	c, err := tasks.ParseClear([]byte(`{"GroupId":"g","MsgSeq":9}`))
	if err != nil || c.GroupId != "g" || c.MsgSeq == nil || *c.MsgSeq != 9 {
		t.Errorf("ParseClear = %+v, %v", c, err)
	}
	r, err := tasks.ParseRecall([]byte(`{"GroupId":"g","MsgSeqList":[{"MsgSeq":4}]}`))
	if err != nil || !reflect.DeepEqual(r.Seqs(), []uint64{4}) {
		t.Errorf("ParseRecall = %+v, %v", r, err)
	}
	m, err := tasks.ParseModify([]byte(`{"GroupId":"g","MsgSeq":1,"CloudCustomData":"x"}`))
	if err != nil || m.CloudCustomData == nil || *m.CloudCustomData != "x" {
		t.Errorf("ParseModify = %+v, %v", m, err)
	}
	if _, err := tasks.ParseRecall([]byte(`{"GroupId":"g","MsgSeqList":[]}`)); fieldOf(err) != "MsgSeqList" {
		t.Errorf("ParseRecall of an empty list: %v, want a MsgSeqList error", err)
	}
}

func fieldOf(err error) string {
	var ve *tasks.ValidationError
	if errors.As(err, &ve) {
		return ve.Field
	}
	return "<not a ValidationError: " + errorString(err) + ">"
}

func errorString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}

func TestParseRejects(t *testing.T) {
	t.Parallel()
	big := `{"GroupId":"g","Reason":"` + strings.Repeat("x", tasks.MaxPayloadBytes) + `","MsgSeqList":[{"MsgSeq":1}]}`
	for _, tc := range []struct {
		name      string
		typ       string
		payload   string
		field     string
		reasonHas string
	}{
		{"unknown type", "timq:nope", `{}`, "type", `unknown task type "timq:nope"`},
		{"empty type", "", `{}`, "type", "unknown task type"},
		{"oversized", tasks.TypeRecall, big, "payload", "more than the 65536 allowed"},
		{"empty", tasks.TypeClear, ``, "payload", "not a valid JSON object"},
		{"not JSON", tasks.TypeClear, `GroupId=g`, "payload", "not a valid JSON object"},
		{"truncated", tasks.TypeClear, `{"GroupId":"g"`, "payload", "not a valid JSON object"},
		{"array", tasks.TypeClear, `[{"GroupId":"g"}]`, "payload", "not a valid JSON object"},
		{"unknown field", tasks.TypeClear, `{"GroupId":"g","MsgSeqs":1}`, "payload", `unknown field "MsgSeqs"`},
		{"unknown nested field", tasks.TypeRecall, `{"GroupId":"g","MsgSeqList":[{"MsgSeq":1,"Seq":2}]}`, "payload", `unknown field "Seq"`},
		{"trailing object", tasks.TypeClear, `{"GroupId":"g"}{"GroupId":"h"}`, "payload", "data after the JSON object"},
		{"trailing garbage", tasks.TypeClear, `{"GroupId":"g"} x`, "payload", "data after the JSON object"},
		{"wrong type", tasks.TypeClear, `{"GroupId":"g","MsgSeq":"1"}`, "payload", "field MsgSeq must be uint64, not string"},
		{"negative seq", tasks.TypeModify, `{"GroupId":"g","MsgSeq":-1,"CloudCustomData":"x"}`, "payload", "must be uint64"},
		{"null is validated", tasks.TypeClear, `null`, "GroupId", "is required"},
		{"invalid value", tasks.TypeRecall, `{"GroupId":"g","MsgSeqList":[{"MsgSeq":1},{"MsgSeq":0}]}`, "MsgSeqList[1].MsgSeq", "at least 1"},
		{"eleven messages", tasks.TypeRecall, `{"GroupId":"g","MsgSeqList":[` + strings.Repeat(`{"MsgSeq":1},`, 10) + `{"MsgSeq":1}]}`, "MsgSeqList", "more than the 10"},
		// What encoding/json would change without a word (a foreign
		// producer's payload): a repeated key, even in another case, would
		// win over the first; invalid UTF-8 and a lone surrogate would
		// become U+FFFD.
		{"repeated key in another case", tasks.TypeClear, `{"GroupId":"a","groupid":"b"}`, "payload", `duplicate key "groupid" (also "GroupId")`},
		{"repeated nested key", tasks.TypeRecall, `{"GroupId":"g","MsgSeqList":[{"MsgSeq":1,"MsgSeq":2}]}`, "MsgSeqList[0]", `duplicate key "MsgSeq"`},
		{"GroupId not UTF-8", tasks.TypeClear, "{\"GroupId\":\"g\xff\"}", "GroupId", "is not valid UTF-8"},
		{"lone surrogate", tasks.TypeRecall, `{"GroupId":"g","Reason":"\ud800","MsgSeqList":[{"MsgSeq":1}]}`, "Reason", `has \ud800`},
		{"bad body element", tasks.TypeModify, `{"GroupId":"g","MsgSeq":1,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":5}}]}`, "MsgBody[0].MsgContent.Text", "must be a string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := tasks.Parse(tc.typ, []byte(tc.payload))
			if err == nil {
				t.Fatalf("Parse = %#v, nil; want an error", p)
			}
			ve, ok := err.(*tasks.ValidationError)
			if !ok {
				t.Fatalf("Parse error %v is a %T, want *tasks.ValidationError", err, err)
			}
			if ve.Field != tc.field || !strings.Contains(ve.Reason, tc.reasonHas) {
				t.Errorf("Parse error = %q, want field %q and a reason with %q", err, tc.field, tc.reasonHas)
			}
		})
	}
}

// TestParseRoundTrip pins the wire format: what NewTask stores is what
// Parse reads back.
func TestParseRoundTrip(t *testing.T) {
	t.Parallel()
	for _, p := range []tasks.Payload{
		tasks.Clear{GroupId: group},
		tasks.Clear{GroupId: group, MsgSeq: seq(18446744073709551615)},
		tasks.Recall{GroupId: group, MsgSeqList: seqRange(100, 10), TopicId: "t", Reason: "r <&>"},
		tasks.Modify{GroupId: group, MsgSeq: 1, MsgBody: tasks.TextBody("<b>&</b>"), CloudCustomData: str(strings.Repeat("<", tasks.MaxCloudCustomDataBytes))},
	} {
		task, err := tasks.NewTask(p)
		if err != nil {
			t.Fatalf("NewTask(%#v): %v", p, err)
		}
		got, err := tasks.Parse(task.Type(), task.Payload())
		if err != nil {
			t.Fatalf("Parse(NewTask(%T)): %v", p, err)
		}
		if normalize(t, got) != normalize(t, p) {
			t.Errorf("round trip of %T changed it:\n got %s\nwant %s", p, normalize(t, got), normalize(t, p))
		}
	}
}

func TestWireFieldNames(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		p    tasks.Payload
		want string
	}{
		{tasks.Clear{GroupId: "g"}, `{"GroupId":"g"}`},
		{tasks.Clear{GroupId: "g", MsgSeq: seq(5)}, `{"GroupId":"g","MsgSeq":5}`},
		{tasks.Recall{GroupId: "g", MsgSeqList: seqs(1)}, `{"GroupId":"g","MsgSeqList":[{"MsgSeq":1}]}`},
		{tasks.Recall{GroupId: "g", MsgSeqList: seqs(1), TopicId: "t", Reason: "r"}, `{"GroupId":"g","MsgSeqList":[{"MsgSeq":1}],"TopicId":"t","Reason":"r"}`},
		{tasks.Modify{GroupId: "g", MsgSeq: 2, CloudCustomData: str("")}, `{"GroupId":"g","MsgSeq":2,"CloudCustomData":""}`},
		{tasks.Modify{GroupId: "g", MsgSeq: 2, MsgBody: tasks.TextBody("x"), TopicId: "t"}, `{"GroupId":"g","MsgSeq":2,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"x"}}],"TopicId":"t"}`},
	} {
		task, err := tasks.NewTask(tc.p)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(task.Payload()); got != tc.want {
			t.Errorf("payload of %T = %s, want %s", tc.p, got, tc.want)
		}
	}
}

// FuzzParse checks that Parse never panics, that every error it returns is
// a *ValidationError, and that whatever it accepts is valid and survives
// an encode/parse round trip unchanged.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"GroupId":"@TGS#2J4SZEAEL"}`,
		`{"GroupId":"g","MsgSeq":1}`,
		`{"GroupId":"g","MsgSeqList":[{"MsgSeq":1},{"MsgSeq":2}],"TopicId":"t","Reason":"r"}`,
		`{"GroupId":"g","MsgSeq":3,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"hi"}}]}`,
		`{"GroupId":"g","MsgSeq":3,"MsgBody":[{"MsgType":"TIMImageElem","MsgContent":{"UUID":"u","ImageFormat":1,"ImageInfoArray":[{"Type":1,"Size":1,"Width":1,"Height":1,"URL":"x"}]}}]}`,
		`{"GroupId":"g","MsgSeq":3,"CloudCustomData":"\u0000"}`,
		`{"GroupId":"g"}{}`, `null`, `[]`, ``, `{"GroupId":1e400}`, `{"MsgSeq":-0}`,
	} {
		for i := range tasks.Types() {
			f.Add(uint8(i), []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, payload []byte) {
		types := append(tasks.Types(), "timq:unknown")
		typ := types[int(which)%len(types)]
		p, err := tasks.Parse(typ, payload)
		if err != nil {
			if _, ok := err.(*tasks.ValidationError); !ok {
				t.Fatalf("Parse error %v is a %T, want *tasks.ValidationError", err, err)
			}
			return
		}
		if p == nil || p.TaskType() != typ {
			t.Fatalf("Parse(%q) = %#v, want a %s payload", typ, p, typ)
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("Parse accepted a payload Validate refuses: %v", err)
		}
		task, err := tasks.NewTask(p)
		if err != nil {
			t.Fatalf("NewTask of a parsed payload: %v", err)
		}
		again, err := tasks.Parse(typ, task.Payload())
		if err != nil {
			t.Fatalf("Parse of NewTask's payload %s: %v", task.Payload(), err)
		}
		b, err := json.Marshal(again)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, task.Payload()) {
			t.Fatalf("round trip changed the payload:\n%s\n%s", task.Payload(), b)
		}
	})
}
