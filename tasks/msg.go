package tasks

import "encoding/json"

// MsgSeqItem is one message of a Recall's MsgSeqList, as Tencent's
// group_msg_recall takes it.
type MsgSeqItem struct {
	MsgSeq uint64 `json:"MsgSeq"`
}

// Seqs returns a MsgSeqList of the given message seqs, in order.
func Seqs(seqs ...uint64) []MsgSeqItem {
	out := make([]MsgSeqItem, len(seqs))
	for i, s := range seqs {
		out[i] = MsgSeqItem{MsgSeq: s}
	}
	return out
}

// MsgElement is one element of a message body (a Modify's MsgBody), as
// Tencent defines it: MsgType names the element ("TIMTextElem",
// "TIMCustomElem", ...) and MsgContent holds its fields as raw JSON, so that
// every element type Tencent defines passes through unchanged.
// ValidateMsgBody checks the fields each type requires; TextElem and
// TextBody build the common text body.
type MsgElement struct {
	MsgType    string          `json:"MsgType"`
	MsgContent json.RawMessage `json:"MsgContent"`
}
