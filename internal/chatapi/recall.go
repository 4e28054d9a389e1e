package chatapi

import "fmt"

// OK reports whether this message was recalled (RetCode 0).
func (r RecallRet) OK() bool { return r.RetCode == 0 }

// Class reports what to do with this message's failure, by ClassifyCode of
// its RetCode. It is meaningless when OK.
func (r RecallRet) Class() Class { return ClassifyCode(r.RetCode) }

// Err returns nil when the message was recalled, otherwise an *Error for
// EndpointRecall carrying the RetCode, so that per-message failures can go
// through the same Classify decision as whole-call failures.
func (r RecallRet) Err() error {
	if r.OK() {
		return nil
	}
	return &Error{Endpoint: EndpointRecall, Code: r.RetCode, HTTPStatus: 200,
		Info: fmt.Sprintf("MsgSeq %d not recalled", r.MsgSeq)}
}

// Succeeded returns the seqs of the messages that were recalled, in answer order.
func (r *GroupMsgRecallResponse) Succeeded() []uint64 {
	if r == nil {
		return nil
	}
	var seqs []uint64
	for _, ret := range r.RecallRetList {
		if ret.OK() {
			seqs = append(seqs, ret.MsgSeq)
		}
	}
	return seqs
}

// Failed returns the entries of the messages that were not recalled
// (RetCode != 0), in answer order.
func (r *GroupMsgRecallResponse) Failed() []RecallRet {
	if r == nil {
		return nil
	}
	var failed []RecallRet
	for _, ret := range r.RecallRetList {
		if !ret.OK() {
			failed = append(failed, ret)
		}
	}
	return failed
}

// Missing returns the seqs of req.MsgSeqList that the answer's RecallRetList
// does not mention, in request order: their outcome is unknown.
func (r *GroupMsgRecallResponse) Missing(req *GroupMsgRecallRequest) []uint64 {
	if req == nil {
		return nil
	}
	seen := make(map[uint64]bool)
	if r != nil {
		for _, ret := range r.RecallRetList {
			seen[ret.MsgSeq] = true
		}
	}
	var missing []uint64
	for _, item := range req.MsgSeqList {
		if !seen[item.MsgSeq] {
			missing = append(missing, item.MsgSeq)
		}
	}
	return missing
}
