package chatapi

import "github.com/timq/timq/tasks"

// Endpoint names a REST API command as it appears in the request path after
// /v4/, for example "group_open_http_svc/clear_group_msg".
type Endpoint string

// The endpoints timq calls. The first three are the operations timq queues;
// send and get-simple seed and inspect state in tests and the emulator.
const (
	EndpointClear     Endpoint = "group_open_http_svc/clear_group_msg"
	EndpointRecall    Endpoint = "group_open_http_svc/group_msg_recall"
	EndpointModify    Endpoint = "openim/modify_group_msg"
	EndpointSend      Endpoint = "group_open_http_svc/send_group_msg"
	EndpointGetSimple Endpoint = "group_open_http_svc/group_msg_get_simple"
)

// Endpoints lists every endpoint the client and the emulator know, in a fixed order.
var Endpoints = []Endpoint{EndpointClear, EndpointRecall, EndpointModify, EndpointSend, EndpointGetSimple}

// Short returns the command part of the endpoint ("clear_group_msg"), used as a
// metric and log label.
func (e Endpoint) Short() string {
	for i := len(e) - 1; i >= 0; i-- {
		if e[i] == '/' {
			return string(e[i+1:])
		}
	}
	return string(e)
}

// MaxRecallPerCall is the most MsgSeq entries group_msg_recall accepts in one call.
const MaxRecallPerCall = tasks.MaxRecallPerTask

// Envelope is the common part of every answer.
type Envelope struct {
	ActionStatus string `json:"ActionStatus"`
	ErrorCode    int    `json:"ErrorCode"`
	ErrorInfo    string `json:"ErrorInfo"`
	RequestID    string `json:"RequestId,omitempty"`
}

// MsgElement is one element of a message body; the public package tasks
// defines it, so that a producer in another module builds the same value.
type MsgElement = tasks.MsgElement

// MsgSeqItem is one entry of a recall's MsgSeqList (see tasks.MsgSeqItem).
type MsgSeqItem = tasks.MsgSeqItem

// ClearGroupMsgRequest is the body of clear_group_msg. A nil MsgSeq clears
// all history; otherwise messages with seq <= MsgSeq are cleared.
type ClearGroupMsgRequest struct {
	GroupId string  `json:"GroupId"`
	MsgSeq  *uint64 `json:"MsgSeq,omitempty"`
}

// ClearGroupMsgResponse is the answer of clear_group_msg.
type ClearGroupMsgResponse struct {
	Envelope
}

// GroupMsgRecallRequest is the body of group_msg_recall (1 to 10 messages).
type GroupMsgRecallRequest struct {
	GroupId    string       `json:"GroupId"`
	MsgSeqList []MsgSeqItem `json:"MsgSeqList"`
	TopicId    string       `json:"TopicId,omitempty"`
	Reason     string       `json:"Reason,omitempty"`
}

// RecallRet is the outcome of recalling one message: RetCode 0 is success.
type RecallRet struct {
	MsgSeq  uint64 `json:"MsgSeq"`
	RetCode int    `json:"RetCode"`
}

// GroupMsgRecallResponse is the answer of group_msg_recall. The call can
// succeed while single messages fail: see RecallRetList.
type GroupMsgRecallResponse struct {
	Envelope
	RecallRetList []RecallRet `json:"RecallRetList"`
}

// ModifyGroupMsgRequest is the body of modify_group_msg. At least one of
// MsgBody and CloudCustomData must be set.
type ModifyGroupMsgRequest struct {
	GroupId         string       `json:"GroupId"`
	MsgSeq          uint64       `json:"MsgSeq"`
	MsgBody         []MsgElement `json:"MsgBody,omitempty"`
	CloudCustomData *string      `json:"CloudCustomData,omitempty"`
	TopicId         string       `json:"TopicId,omitempty"`
}

// ModifyGroupMsgResponse is the answer of modify_group_msg.
type ModifyGroupMsgResponse struct {
	Envelope
}

// SendGroupMsgRequest is the body of send_group_msg.
type SendGroupMsgRequest struct {
	GroupId         string       `json:"GroupId"`
	Random          uint32       `json:"Random"`
	MsgBody         []MsgElement `json:"MsgBody"`
	From_Account    string       `json:"From_Account,omitempty"`
	CloudCustomData string       `json:"CloudCustomData,omitempty"`
	TopicId         string       `json:"TopicId,omitempty"`
}

// SendGroupMsgResponse is the answer of send_group_msg.
type SendGroupMsgResponse struct {
	Envelope
	MsgSeq  uint64 `json:"MsgSeq"`
	MsgTime int64  `json:"MsgTime"`
}

// GroupMsgGetSimpleRequest is the body of group_msg_get_simple.
type GroupMsgGetSimpleRequest struct {
	GroupId         string `json:"GroupId"`
	ReqMsgNumber    int    `json:"ReqMsgNumber"`
	ReqMsgSeq       uint64 `json:"ReqMsgSeq,omitempty"`
	WithRecalledMsg int    `json:"WithRecalledMsg,omitempty"`
	TopicId         string `json:"TopicId,omitempty"`
}

// Place-message markers of RspMsg.IsPlaceMsg.
const (
	PlaceNormal   = 0
	PlaceDeleted  = 1 // cleared or expired
	PlaceRecalled = 2
)

// RspMsg is one message in a group_msg_get_simple answer.
type RspMsg struct {
	MsgSeq          uint64       `json:"MsgSeq"`
	MsgRandom       uint32       `json:"MsgRandom"`
	MsgTimeStamp    int64        `json:"MsgTimeStamp"`
	From_Account    string       `json:"From_Account"`
	IsPlaceMsg      int          `json:"IsPlaceMsg"`
	MsgBody         []MsgElement `json:"MsgBody"`
	CloudCustomData string       `json:"CloudCustomData,omitempty"`
}

// GroupMsgGetSimpleResponse is the answer of group_msg_get_simple.
type GroupMsgGetSimpleResponse struct {
	Envelope
	GroupId    string   `json:"GroupId"`
	IsFinished int      `json:"IsFinished"`
	RspMsgList []RspMsg `json:"RspMsgList"`
}
