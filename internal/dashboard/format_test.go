package dashboard_test

import (
	"strings"
	"testing"

	"github.com/timq/timq/internal/dashboard"
	"github.com/timq/timq/tasks"
)

func TestFormatPayload(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, typ, payload string
		first              string // the first line
		contains           string
	}{
		{"clear all", tasks.TypeClear, `{"GroupId":"@TGS#x"}`, "clear @TGS#x all messages", "\"GroupId\": \"@TGS#x\""},
		{"clear up to", tasks.TypeClear, `{"GroupId":"@TGS#x","MsgSeq":42}`, "clear @TGS#x seq <= 42", "\"MsgSeq\": 42"},
		{"recall", tasks.TypeRecall, `{"GroupId":"@TGS#x","MsgSeqList":[{"MsgSeq":1},{"MsgSeq":2},{"MsgSeq":3}]}`, "recall @TGS#x seq 1,2,3", "\"MsgSeqList\": ["},
		{"recall in a topic with a reason", tasks.TypeRecall, `{"GroupId":"@TGS#_c","TopicId":"@TGS#_c@TOPIC#_t","Reason":"spam","MsgSeqList":[{"MsgSeq":9}]}`,
			"recall @TGS#_c topic @TGS#_c@TOPIC#_t seq 9 (reason: spam)", ""},
		{"modify body", tasks.TypeModify, `{"GroupId":"g1","MsgSeq":7,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"hi"}}]}`, "modify g1 seq 7: body of 1 element(s)", "TIMTextElem"},
		{"modify custom data", tasks.TypeModify, `{"GroupId":"g1","MsgSeq":7,"CloudCustomData":"x"}`, "modify g1 seq 7: CloudCustomData", ""},
		{"invalid timq payload", tasks.TypeClear, `{"GroupId":""}`, "invalid payload: ", "\"GroupId\": \"\""},
		{"unknown field", tasks.TypeClear, `{"GroupId":"g","Extra":1}`, "invalid payload: ", ""},
		{"not JSON", tasks.TypeClear, `not json`, "invalid payload: ", "not json"},
		{"other type, JSON", "email:send", `{"to":"a@b"}`, "{", "\"to\": \"a@b\""},
		{"other type, text", "email:send", `hello`, "hello", ""},
		{"other type, binary", "email:send", "\x00\x01\xff", "non-printable bytes", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := dashboard.FormatPayload(tt.typ, []byte(tt.payload))
			first, _, _ := strings.Cut(got, "\n")
			if !strings.HasPrefix(first, tt.first) {
				t.Errorf("first line %q, want %q\nwhole:\n%s", first, tt.first, got)
			}
			if !strings.Contains(got, tt.contains) {
				t.Errorf("output lacks %q:\n%s", tt.contains, got)
			}
		})
	}
}

func TestFormatResult(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, typ, result, first string }{
		{"clear applied", tasks.TypeClear, `{"status":"applied","endpoint":"clear_group_msg","attempt":2,"at":"2026-01-02T03:04:05Z"}`,
			"applied by clear_group_msg on attempt 2 at 2026-01-02T03:04:05Z"},
		{"modify applied", tasks.TypeModify, `{"status":"applied","endpoint":"modify_group_msg","attempt":1,"at":"t"}`, "applied by modify_group_msg on attempt 1 at t"},
		{"recall mixed", tasks.TypeRecall, `{"attempt":3,"messages":[{"MsgSeq":1,"RetCode":0,"status":"recalled"},{"MsgSeq":2,"RetCode":0,"status":"recalled"},{"MsgSeq":3,"RetCode":10030,"status":"dead_lettered"}]}`,
			"recalled 2, dead-lettered 1 of 3 messages (attempt 3)"},
		{"unknown shape", tasks.TypeClear, `{"x":1}`, "{"},
	}
	for _, tt := range tests {
		got := dashboard.FormatResult(tt.typ, []byte(tt.result))
		if first, _, _ := strings.Cut(got, "\n"); first != tt.first {
			t.Errorf("%s: first line %q, want %q", tt.name, first, tt.first)
		}
	}
}
