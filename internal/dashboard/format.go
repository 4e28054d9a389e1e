package dashboard

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/timq/timq/tasks"
)

// maxSummarySeqs is how many seqs a recall summary lists before "...".
const maxSummarySeqs = 10

// FormatPayload renders a task payload for the dashboard: for timq's task
// types a one-line summary ("recall @TGS#x seq 1,2,3") then the payload as
// indented JSON; for a payload that does not validate, the reason instead of
// the summary; for other JSON, indented JSON; otherwise the text itself, or
// "non-printable bytes" like asynqmon's default.
func FormatPayload(taskType string, payload []byte) string {
	summary := Summary(taskType, payload)
	return joinSummary(summary, payload)
}

// Summary returns the one-line summary of a payload of a timq task type, an
// "invalid payload: ..." line when it does not parse or validate, or "" for
// other task types.
func Summary(taskType string, payload []byte) string {
	if tasks.QueueFor(taskType) == "" {
		return ""
	}
	p, err := tasks.Parse(taskType, payload)
	if err != nil {
		return "invalid payload: " + err.Error()
	}
	switch p := p.(type) {
	case tasks.Clear:
		if p.MsgSeq == nil {
			return "clear " + p.GroupId + " all messages"
		}
		return "clear " + p.GroupId + " seq <= " + strconv.FormatUint(*p.MsgSeq, 10)
	case tasks.Recall:
		s := "recall " + where(p.GroupId, p.TopicId) + " seq " + seqList(p.Seqs())
		if p.Reason != "" {
			s += " (reason: " + p.Reason + ")"
		}
		return s
	case tasks.Modify:
		var what []string
		if len(p.MsgBody) > 0 {
			what = append(what, fmt.Sprintf("body of %d element(s)", len(p.MsgBody)))
		}
		if p.CloudCustomData != nil {
			what = append(what, "CloudCustomData")
		}
		return "modify " + where(p.GroupId, p.TopicId) + " seq " + strconv.FormatUint(p.MsgSeq, 10) + ": " + strings.Join(what, " and ")
	}
	return ""
}

func where(group, topic string) string {
	if topic != "" {
		return group + " topic " + topic
	}
	return group
}

func seqList(seqs []uint64) string {
	var b strings.Builder
	for i, s := range seqs {
		if i == maxSummarySeqs {
			fmt.Fprintf(&b, ",... (%d in all)", len(seqs))
			break
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(s, 10))
	}
	return b.String()
}

// FormatResult renders a task result for the dashboard: for timq's task
// types a one-line summary ("applied by clear_group_msg on attempt 1",
// "recalled 2, dead-lettered 1 of 3 messages") then the result as indented
// JSON; for anything else what FormatPayload shows for other task types.
func FormatResult(taskType string, result []byte) string {
	return joinSummary(resultSummary(taskType, result), result)
}

func resultSummary(taskType string, result []byte) string {
	switch taskType {
	case tasks.TypeClear, tasks.TypeModify:
		var r struct {
			Status   string `json:"status"`
			Endpoint string `json:"endpoint"`
			Attempt  int    `json:"attempt"`
			At       string `json:"at"`
		}
		if json.Unmarshal(result, &r) != nil || r.Status == "" {
			return ""
		}
		return fmt.Sprintf("%s by %s on attempt %d at %s", r.Status, r.Endpoint, r.Attempt, r.At)
	case tasks.TypeRecall:
		var r struct {
			Attempt  int `json:"attempt"`
			Messages []struct {
				Status string `json:"status"`
			} `json:"messages"`
		}
		if json.Unmarshal(result, &r) != nil || len(r.Messages) == 0 {
			return ""
		}
		n := map[string]int{}
		for _, m := range r.Messages {
			n[m.Status]++
		}
		var parts []string
		for _, st := range []string{"recalled", "retrying", "dead_lettered"} {
			if n[st] > 0 {
				parts = append(parts, fmt.Sprintf("%s %d", strings.ReplaceAll(st, "_", "-"), n[st]))
			}
		}
		return fmt.Sprintf("%s of %d messages (attempt %d)", strings.Join(parts, ", "), len(r.Messages), r.Attempt)
	}
	return ""
}

// joinSummary puts summary (if any) on the first line and the body, indented
// when it is JSON, below it.
func joinSummary(summary string, body []byte) string {
	text := pretty(body)
	if summary == "" {
		return text
	}
	return summary + "\n\n" + text
}

// pretty returns JSON indented by two spaces, printable text as is, and
// "non-printable bytes" for anything else.
func pretty(b []byte) string {
	var out bytes.Buffer
	if json.Valid(b) && json.Indent(&out, b, "", "  ") == nil {
		return out.String()
	}
	if !printable(b) {
		return "non-printable bytes"
	}
	return string(b)
}

func printable(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if !unicode.IsPrint(r) && !unicode.IsSpace(r) {
			return false
		}
	}
	return true
}
