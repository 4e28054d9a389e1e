package sim

import (
	"bytes"
	"encoding/json"
	"errors"

	"github.com/timq/timq/tasks"

	"github.com/timq/timq/internal/chatapi"
)

// present reports whether the body has a non-null top-level field name.
func (c *call) present(name string) bool {
	v, ok := c.raw[name]
	return ok && !bytes.Equal(bytes.TrimSpace(v), []byte("null"))
}

// decode decodes the body into v; a mistyped field answers code.
func (c *call) decode(v any, code int) answer {
	if err := json.Unmarshal(c.body, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return failure(code, "invalid parameter: field %s must be %s, not a JSON %s", te.Field, te.Type, te.Value)
		}
		return failure(code, "invalid parameter: the body does not decode")
	}
	return nil
}

// bodyFailure turns a msgbody validation error into the answer.
func bodyFailure(err error) answer {
	var be *tasks.MsgBodyError
	if errors.As(err, &be) {
		return failure(be.Code, "%s", be.Error())
	}
	return failure(tasks.MsgBodyCodeBadElement, "MsgBody: %v", err)
}

// clearGroupMsg marks messages cleared: seq <= MsgSeq, or every message when
// MsgSeq is absent. The watermark only rises and never passes the group's
// current last seq, so later messages are not cleared in advance.
// Community groups answer 10007.
func (s *Server) clearGroupMsg(_ *endpoint, c *call) answer {
	var req chatapi.ClearGroupMsgRequest
	if a := c.decode(&req, CodeBadParam); a != nil {
		return a
	}
	if req.GroupId == "" {
		return failure(CodeBadParam, "invalid parameter: GroupId is required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g, t, code, info := s.lookup(req.GroupId, "")
	if code != 0 {
		return failure(code, "%s", info)
	}
	if g.typ == GroupCommunity {
		return failure(CodeNoPermission, "group type %s does not support clear_group_msg", g.typ)
	}
	upTo := t.max()
	if req.MsgSeq != nil && *req.MsgSeq < upTo {
		upTo = *req.MsgSeq
	}
	if upTo > t.cleared {
		s.totals.cleared += int64(upTo - t.cleared)
		t.cleared = upTo
	}
	g.lastClear = c.at
	return &clearAnswer{chatapi.ClearGroupMsgResponse{Envelope: okEnvelope()}}
}

// groupMsgRecall recalls 1 to 10 messages, answering a RetCode for each:
// 0 when recalled now or already recalled before, 10030 when the seq does
// not exist or the message is cleared. The call itself is OK whenever the
// group is found and the list is well-formed.
func (s *Server) groupMsgRecall(e *endpoint, c *call) answer {
	var req chatapi.GroupMsgRecallRequest
	if a := c.decode(&req, CodeBadParam); a != nil {
		return a
	}
	if req.GroupId == "" {
		return failure(CodeBadParam, "invalid parameter: GroupId is required")
	}
	if n := len(req.MsgSeqList); n == 0 || n > chatapi.MaxRecallPerCall {
		return failure(CodeBadParam, "invalid parameter: MsgSeqList must hold 1 to %d entries, has %d", chatapi.MaxRecallPerCall, n)
	}
	s.mu.Lock()
	_, t, code, info := s.lookup(req.GroupId, req.TopicId)
	if code != 0 {
		s.mu.Unlock()
		return failure(code, "%s", info)
	}
	rets := make([]chatapi.RecallRet, len(req.MsgSeqList))
	for i, item := range req.MsgSeqList {
		rets[i] = chatapi.RecallRet{MsgSeq: item.MsgSeq}
		m := t.get(item.MsgSeq)
		switch {
		case m == nil || item.MsgSeq <= t.cleared:
			rets[i].RetCode = CodeMsgMissing
		case m.recalled:
			// Recalling again succeeds: our assumption, Tencent does not say.
		default:
			m.recalled = true
			m.recalledAt = c.at
			s.totals.recalled++
			s.countRecalledLocked(c.at)
		}
	}
	s.mu.Unlock()
	e.count(func(st *epStats) {
		for _, r := range rets {
			st.RecallRetCodes[r.RetCode]++
		}
	})
	return &recallAnswer{chatapi.GroupMsgRecallResponse{Envelope: okEnvelope(), RecallRetList: rets}}
}

// modifyGroupMsg replaces a message's MsgBody and/or CloudCustomData.
func (s *Server) modifyGroupMsg(_ *endpoint, c *call) answer {
	hasBody := c.present("MsgBody")
	if hasBody {
		if err := tasks.ValidateMsgBodyJSON(c.raw["MsgBody"]); err != nil {
			return bodyFailure(err)
		}
	}
	var req chatapi.ModifyGroupMsgRequest
	if a := c.decode(&req, CodeModifyJSON); a != nil {
		return a
	}
	switch {
	case req.GroupId == "":
		return failure(CodeModifyBadRequest, "invalid request: GroupId is required")
	case !c.present("MsgSeq"):
		return failure(CodeModifyBadRequest, "invalid request: MsgSeq is required")
	case !hasBody && req.CloudCustomData == nil:
		return failure(CodeModifyBadRequest, "invalid request: MsgBody or CloudCustomData is required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g, t, code, info := s.lookup(req.GroupId, req.TopicId)
	if code != 0 {
		return failure(code, "%s", info)
	}
	if g.typ == GroupAVChatRoom {
		return failure(CodeNoPermission, "group type %s does not support modify_group_msg", g.typ)
	}
	m := t.get(req.MsgSeq)
	switch {
	case m == nil || req.MsgSeq <= t.cleared:
		return failure(CodeMsgMissing, "message %d does not exist", req.MsgSeq)
	case m.recalled:
		return failure(CodeMsgMissing, "message %d was recalled", req.MsgSeq)
	}
	if hasBody {
		m.body = cloneBody(req.MsgBody)
	}
	if req.CloudCustomData != nil {
		m.ccd = *req.CloudCustomData
	}
	m.modified++
	m.modifiedAt = c.at
	s.totals.modified++
	env := okEnvelope()
	env.ErrorInfo = "succeed"
	return &modifyAnswer{chatapi.ModifyGroupMsgResponse{Envelope: env}}
}

// sendGroupMsg appends a message and answers its seq and time.
func (s *Server) sendGroupMsg(_ *endpoint, c *call) answer {
	if err := tasks.ValidateMsgBodyJSON(c.raw["MsgBody"]); err != nil {
		return bodyFailure(err)
	}
	var req chatapi.SendGroupMsgRequest
	if a := c.decode(&req, CodeBadParam); a != nil {
		return a
	}
	if req.GroupId == "" {
		return failure(CodeBadParam, "invalid parameter: GroupId is required")
	}
	from := req.From_Account
	if from == "" {
		from = c.identifier
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g, t, code, info := s.lookup(req.GroupId, req.TopicId)
	if code != 0 {
		return failure(code, "%s", info)
	}
	now := s.cfg.Now().Unix()
	m := &message{from: from, random: req.Random, time: now, body: cloneBody(req.MsgBody), ccd: req.CloudCustomData}
	seq := t.append(m)
	s.totals.sent++
	s.cb.add(afterSendEvent{GroupID: req.GroupId, TopicID: req.TopicId, From: from, Type: g.typ, Seq: seq, Random: m.random, Time: now, Body: m.body, CCD: m.ccd})
	return &sendAnswer{chatapi.SendGroupMsgResponse{Envelope: okEnvelope(), MsgSeq: seq, MsgTime: now}}
}

// maxGetSimple is the most messages group_msg_get_simple answers.
const maxGetSimple = 20

// groupMsgGetSimple lists up to ReqMsgNumber messages, newest first, from
// ReqMsgSeq (or the newest) down. Cleared messages are listed with their
// content and IsPlaceMsg 1 (an admin can still pull them). Recalled
// messages are left out unless WithRecalledMsg is 1; then they are listed
// with IsPlaceMsg 2 and no content. IsFinished is 1 when no older message
// would be listed.
func (s *Server) groupMsgGetSimple(_ *endpoint, c *call) answer {
	var req chatapi.GroupMsgGetSimpleRequest
	if a := c.decode(&req, CodeBadParam); a != nil {
		return a
	}
	if req.GroupId == "" {
		return failure(CodeBadParam, "invalid parameter: GroupId is required")
	}
	if req.ReqMsgNumber < 1 || req.ReqMsgNumber > maxGetSimple {
		return failure(CodeBadParam, "invalid parameter: ReqMsgNumber must be 1 to %d, is %d", maxGetSimple, req.ReqMsgNumber)
	}
	withRecalled := req.WithRecalledMsg == 1
	s.mu.Lock()
	defer s.mu.Unlock()
	_, t, code, info := s.lookup(req.GroupId, req.TopicId)
	if code != 0 {
		return failure(code, "%s", info)
	}
	seq := t.max()
	if req.ReqMsgSeq != 0 && req.ReqMsgSeq < seq {
		seq = req.ReqMsgSeq
	}
	list := []chatapi.RspMsg{}
	for ; seq > 0 && len(list) < req.ReqMsgNumber; seq-- {
		m := t.get(seq)
		if m.recalled && !withRecalled {
			continue
		}
		rm := chatapi.RspMsg{MsgSeq: seq, MsgRandom: m.random, MsgTimeStamp: m.time, From_Account: m.from,
			MsgBody: cloneBody(m.body), CloudCustomData: m.ccd}
		switch {
		case m.recalled:
			rm.IsPlaceMsg = chatapi.PlaceRecalled
			rm.MsgBody, rm.CloudCustomData = []chatapi.MsgElement{}, ""
		case seq <= t.cleared:
			rm.IsPlaceMsg = chatapi.PlaceDeleted
		}
		list = append(list, rm)
	}
	finished := 1
	for ; seq > 0; seq-- {
		if withRecalled || !t.get(seq).recalled {
			finished = 0
			break
		}
	}
	return &getSimpleAnswer{chatapi.GroupMsgGetSimpleResponse{Envelope: okEnvelope(), GroupId: req.GroupId, IsFinished: finished, RspMsgList: list}}
}
