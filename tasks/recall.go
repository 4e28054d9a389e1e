package tasks

import (
	"unicode/utf8"
)

// MaxRecallPerTask is the most messages one recall task carries, the API's
// limit per call. enqueue splits longer lists into several tasks.
const MaxRecallPerTask = 10

// Recall recalls messages of a group (or of a community topic) through
// group_msg_recall. A recall is irrevocable; each message has its own
// outcome.
type Recall struct {
	GroupId    string       `json:"GroupId"`
	MsgSeqList []MsgSeqItem `json:"MsgSeqList"`
	TopicId    string       `json:"TopicId,omitempty"`
	Reason     string       `json:"Reason,omitempty"`
}

// TaskType returns TypeRecall.
func (Recall) TaskType() string { return TypeRecall }

// DefaultQueue returns QueueRecall.
func (Recall) DefaultQueue() string { return QueueRecall }

// Seqs returns the message sequence numbers in order.
func (r Recall) Seqs() []uint64 {
	out := make([]uint64, len(r.MsgSeqList))
	for i, m := range r.MsgSeqList {
		out[i] = m.MsgSeq
	}
	return out
}

// Validate checks GroupId, TopicId, Reason and MsgSeqList: 1 to 10 entries,
// each at least 1, none repeated.
func (r Recall) Validate() error {
	if err := checkID("GroupId", r.GroupId, true, MaxGroupIDBytes); err != nil {
		return err
	}
	if err := checkID("TopicId", r.TopicId, false, MaxTopicIDBytes); err != nil {
		return err
	}
	if len(r.Reason) > MaxReasonBytes {
		return invalid("Reason", "is %d bytes, more than %d", len(r.Reason), MaxReasonBytes)
	}
	// JSON would carry invalid UTF-8 as U+FFFD: not the text given.
	if !utf8.ValidString(r.Reason) {
		return invalid("Reason", "is not valid UTF-8")
	}
	switch n := len(r.MsgSeqList); {
	case n == 0:
		return invalid("MsgSeqList", "must hold at least one message")
	case n > MaxRecallPerTask:
		return invalid("MsgSeqList", "holds %d messages, more than the %d one call takes", n, MaxRecallPerTask)
	}
	seen := make(map[uint64]int, len(r.MsgSeqList))
	for i, m := range r.MsgSeqList {
		if m.MsgSeq == 0 {
			return invalid(fieldIndex("MsgSeqList", i, "MsgSeq"), "must be at least 1")
		}
		if j, dup := seen[m.MsgSeq]; dup {
			return invalid(fieldIndex("MsgSeqList", i, "MsgSeq"), "repeats MsgSeqList[%d] (%d)", j, m.MsgSeq)
		}
		seen[m.MsgSeq] = i
	}
	return nil
}

// SplitRecall splits a recall of any number of messages into recalls of at
// most MaxRecallPerTask, keeping their order, GroupId, TopicId and Reason.
func SplitRecall(r Recall) []Recall {
	var out []Recall
	for start := 0; start < len(r.MsgSeqList); start += MaxRecallPerTask {
		end := min(start+MaxRecallPerTask, len(r.MsgSeqList))
		part := r
		part.MsgSeqList = append([]MsgSeqItem(nil), r.MsgSeqList[start:end]...)
		out = append(out, part)
	}
	return out
}
