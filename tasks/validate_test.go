package tasks_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/timq/timq/tasks"
)

func seq(n uint64) *uint64 { return &n }

func str(s string) *string { return &s }

// seqs returns a MsgSeqList of the given sequence numbers.
func seqs(ns ...uint64) []tasks.MsgSeqItem {
	out := make([]tasks.MsgSeqItem, len(ns))
	for i, n := range ns {
		out[i] = tasks.MsgSeqItem{MsgSeq: n}
	}
	return out
}

// seqRange returns a MsgSeqList of from, from+1, ..., from+n-1.
func seqRange(from uint64, n int) []tasks.MsgSeqItem {
	out := make([]tasks.MsgSeqItem, n)
	for i := range out {
		out[i] = tasks.MsgSeqItem{MsgSeq: from + uint64(i)}
	}
	return out
}

const group = "@TGS#2J4SZEAEL"

// validationCase is a payload and the field its Validate must name ("" for valid).
type validationCase struct {
	name      string
	p         tasks.Payload
	field     string
	reasonHas string
}

func checkValidation(t *testing.T, cases []validationCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.p.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var ve *tasks.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate() = %v (%T), want a *tasks.ValidationError", err, err)
			}
			if ve.Field != tc.field {
				t.Errorf("Field = %q, want %q (error %q)", ve.Field, tc.field, err)
			}
			if !strings.Contains(ve.Reason, tc.reasonHas) {
				t.Errorf("Reason = %q, want it to contain %q", ve.Reason, tc.reasonHas)
			}
			if got, want := err.Error(), ve.Field+": "+ve.Reason; got != want {
				t.Errorf("Error() = %q, want %q", got, want)
			}
		})
	}
}

// idCases checks the rules every ID field (GroupId, TopicId) shares.
func idCases(field string, max int, make func(string) tasks.Payload) []validationCase {
	return []validationCase{
		{field + " at the limit", make(strings.Repeat("a", max)), "", ""},
		{field + " too long", make(strings.Repeat("a", max+1)), field, "more than"},
		{field + " not UTF-8", make("ab\xffc"), field, "UTF-8"},
		{field + " leading space", make(" abc"), field, "white space"},
		{field + " trailing newline", make("abc\n"), field, "white space"},
		{field + " control character", make("a\x01b"), field, "control character"},
		{field + " tab inside", make("a\tb"), field, "control character"},
		{field + " DEL", make("a\x7fb"), field, "control character"},
		{field + " C1 next line", make("a\u0085b"), field, "control character"},
		{field + " non-ASCII", make("群组"), "", ""},
	}
}

func TestClearValidate(t *testing.T) {
	t.Parallel()
	cases := []validationCase{
		{"all history", tasks.Clear{GroupId: group}, "", ""},
		{"up to a seq", tasks.Clear{GroupId: group, MsgSeq: seq(1)}, "", ""},
		{"no group", tasks.Clear{}, "GroupId", "is required"},
		{"seq zero", tasks.Clear{GroupId: group, MsgSeq: seq(0)}, "MsgSeq", "at least 1"},
	}
	cases = append(cases, idCases("GroupId", tasks.MaxGroupIDBytes, func(s string) tasks.Payload {
		return tasks.Clear{GroupId: s}
	})...)
	checkValidation(t, cases)
}

func TestRecallValidate(t *testing.T) {
	t.Parallel()
	ok := tasks.Recall{GroupId: group, MsgSeqList: seqs(1)}
	with := func(f func(*tasks.Recall)) tasks.Recall {
		r := ok
		f(&r)
		return r
	}
	cases := []validationCase{
		{"one message", ok, "", ""},
		{"ten messages", with(func(r *tasks.Recall) { r.MsgSeqList = seqRange(1, 10) }), "", ""},
		{"topic and reason", with(func(r *tasks.Recall) {
			r.TopicId = "@TGS#_@TGS#cQVLVHIM62CJ@TOPIC#_TestTopic"
			r.Reason = strings.Repeat("r", tasks.MaxReasonBytes)
		}), "", ""},
		{"no group", with(func(r *tasks.Recall) { r.GroupId = "" }), "GroupId", "is required"},
		{"group checked before list", tasks.Recall{}, "GroupId", "is required"},
		{"nil list", with(func(r *tasks.Recall) { r.MsgSeqList = nil }), "MsgSeqList", "at least one"},
		{"empty list", with(func(r *tasks.Recall) { r.MsgSeqList = seqs() }), "MsgSeqList", "at least one"},
		{"eleven messages", with(func(r *tasks.Recall) { r.MsgSeqList = seqRange(1, 11) }), "MsgSeqList", "holds 11 messages, more than the 10"},
		{"seq zero first", with(func(r *tasks.Recall) { r.MsgSeqList = seqs(0, 2) }), "MsgSeqList[0].MsgSeq", "at least 1"},
		{"seq zero third", with(func(r *tasks.Recall) { r.MsgSeqList = seqs(1, 2, 0) }), "MsgSeqList[2].MsgSeq", "at least 1"},
		{"repeated seq", with(func(r *tasks.Recall) { r.MsgSeqList = seqs(5, 6, 5) }), "MsgSeqList[2].MsgSeq", "repeats MsgSeqList[0] (5)"},
		{"reason too long", with(func(r *tasks.Recall) { r.Reason = strings.Repeat("r", tasks.MaxReasonBytes+1) }), "Reason", "more than 256"},
		{"reason in Chinese", with(func(r *tasks.Recall) { r.Reason = "违规内容" }), "", ""},
		{"reason not UTF-8", with(func(r *tasks.Recall) { r.Reason = "spam\xff" }), "Reason", "is not valid UTF-8"},
	}
	cases = append(cases, idCases("GroupId", tasks.MaxGroupIDBytes, func(s string) tasks.Payload {
		return with(func(r *tasks.Recall) { r.GroupId = s })
	})...)
	cases = append(cases, idCases("TopicId", tasks.MaxTopicIDBytes, func(s string) tasks.Payload {
		return with(func(r *tasks.Recall) { r.TopicId = s })
	})...)
	checkValidation(t, cases)
}

func TestModifyValidate(t *testing.T) {
	t.Parallel()
	ok := tasks.Modify{GroupId: group, MsgSeq: 7, MsgBody: tasks.TextBody("hello")}
	with := func(f func(*tasks.Modify)) tasks.Modify {
		m := ok
		f(&m)
		return m
	}
	cases := []validationCase{
		{"body", ok, "", ""},
		{"custom data only", with(func(m *tasks.Modify) { m.MsgBody = nil; m.CloudCustomData = str("x") }), "", ""},
		{"empty custom data clears it", with(func(m *tasks.Modify) { m.MsgBody = nil; m.CloudCustomData = str("") }), "", ""},
		{"custom data at the limit", with(func(m *tasks.Modify) {
			m.CloudCustomData = str(strings.Repeat("c", tasks.MaxCloudCustomDataBytes))
		}), "", ""},
		{"no group", with(func(m *tasks.Modify) { m.GroupId = "" }), "GroupId", "is required"},
		{"seq zero", with(func(m *tasks.Modify) { m.MsgSeq = 0 }), "MsgSeq", "at least 1"},
		{"nothing to change", with(func(m *tasks.Modify) { m.MsgBody = nil }), "MsgBody", "or CloudCustomData is required"},
		{"empty body", with(func(m *tasks.Modify) { m.MsgBody = []tasks.MsgElement{} }), "MsgBody", "at least one element"},
		{"unknown element", with(func(m *tasks.Modify) {
			m.MsgBody = []tasks.MsgElement{{MsgType: "TIMNopeElem", MsgContent: []byte(`{}`)}}
		}), "MsgBody[0].MsgType", "unknown element type"},
		{"text missing", with(func(m *tasks.Modify) {
			m.MsgBody = append(tasks.TextBody("a"), tasks.MsgElement{MsgType: "TIMTextElem", MsgContent: []byte(`{}`)})
		}), "MsgBody[1].MsgContent.Text", "is required"},
		{"content not an object", with(func(m *tasks.Modify) {
			m.MsgBody = []tasks.MsgElement{{MsgType: "TIMTextElem", MsgContent: []byte(`"hi"`)}}
		}), "MsgBody[0].MsgContent", "JSON object"},
		{"custom data not UTF-8", with(func(m *tasks.Modify) { m.CloudCustomData = str("\xc0\xaf") }), "CloudCustomData", "is not valid UTF-8"},
		{"custom data too long", with(func(m *tasks.Modify) {
			m.CloudCustomData = str(strings.Repeat("c", tasks.MaxCloudCustomDataBytes+1))
		}), "CloudCustomData", "more than 8192"},
	}
	cases = append(cases, idCases("GroupId", tasks.MaxGroupIDBytes, func(s string) tasks.Payload {
		return with(func(m *tasks.Modify) { m.GroupId = s })
	})...)
	cases = append(cases, idCases("TopicId", tasks.MaxTopicIDBytes, func(s string) tasks.Payload {
		return with(func(m *tasks.Modify) { m.TopicId = s })
	})...)
	checkValidation(t, cases)
}

func TestPayloadTypesAndQueues(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		p           tasks.Payload
		typ, queue  string
		wireType    string
		wireQueue   string
		queueForTyp string
	}{
		{tasks.Clear{}, tasks.TypeClear, tasks.QueueClear, "timq:clear", "timq-clear", tasks.QueueClear},
		{tasks.Recall{}, tasks.TypeRecall, tasks.QueueRecall, "timq:recall", "timq-recall", tasks.QueueRecall},
		{tasks.Modify{}, tasks.TypeModify, tasks.QueueModify, "timq:modify", "timq-modify", tasks.QueueModify},
	} {
		if got := tc.p.TaskType(); got != tc.typ || got != tc.wireType {
			t.Errorf("%T.TaskType() = %q, want %q", tc.p, got, tc.wireType)
		}
		if got := tc.p.DefaultQueue(); got != tc.queue || got != tc.wireQueue {
			t.Errorf("%T.DefaultQueue() = %q, want %q", tc.p, got, tc.wireQueue)
		}
		if got := tasks.QueueFor(tc.typ); got != tc.queueForTyp {
			t.Errorf("QueueFor(%q) = %q, want %q", tc.typ, got, tc.queueForTyp)
		}
	}
	if got := tasks.QueueFor("timq:nope"); got != "" {
		t.Errorf(`QueueFor("timq:nope") = %q, want ""`, got)
	}
	if got, want := strings.Join(tasks.Types(), ","), "timq:clear,timq:recall,timq:modify"; got != want {
		t.Errorf("Types() = %s, want %s", got, want)
	}
	if got, want := strings.Join(tasks.Queues(), ","), "timq-clear,timq-recall,timq-modify"; got != want {
		t.Errorf("Queues() = %s, want %s", got, want)
	}
}
