package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"strconv"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/msgindex"
)

// Callbacks configures the receiver of Tencent's webhooks.
type Callbacks struct {
	// SDKAppID is the app whose callbacks are taken; others are refused.
	SDKAppID uint64
	// Token, when set, is the callback authentication token: a callback
	// must carry RequestTime within MaxCallbackSkew of now and Sign =
	// hex(sha256(Token + RequestTime)).
	Token string
	// Index records each after-send message.
	Index *msgindex.Index
	// Now is the clock RequestTime is checked against. Defaults to time.Now.
	Now func() time.Time
}

// MaxCallbackSkew is how far a callback's RequestTime may be from now: a
// request older than that is refused as a replay.
const MaxCallbackSkew = 60 * time.Second

// CommandAfterSend is the callback that feeds the message index.
const CommandAfterSend = "Group.CallbackAfterSendMsg"

type callbackInput struct {
	SdkAppid        string `query:"SdkAppid" doc:"The app's SDKAppID."`
	CallbackCommand string `query:"CallbackCommand"`
	RequestTime     string `query:"RequestTime" doc:"Unix seconds, with callback authentication."`
	Sign            string `query:"Sign" doc:"hex(sha256(token + RequestTime)), with callback authentication."`
	ContentType     string `query:"contenttype"`
	ClientIP        string `query:"ClientIP"`
	OptPlatform     string `query:"OptPlatform"`
	RawBody         []byte
}

// CallbackAnswer is what Tencent expects back.
type CallbackAnswer struct {
	ActionStatus string `json:"ActionStatus" enum:"OK"`
	ErrorInfo    string `json:"ErrorInfo"`
	ErrorCode    int    `json:"ErrorCode"`
}

type callbackOutput struct{ Body CallbackAnswer }

// afterSend is the part of Group.CallbackAfterSendMsg the index needs.
type afterSend struct {
	CallbackCommand string
	GroupID         string `json:"GroupId"`
	TopicID         string `json:"TopicId"`
	From            string `json:"From_Account"`
	MsgSeq          uint64
	MsgTime         int64
}

// receiveCallback verifies a callback and, for an after-send one, records
// the message before answering OK: a message answered OK is in the index.
func (s *Server) receiveCallback(ctx context.Context, in *callbackInput) (*callbackOutput, error) {
	cb := s.cfg.Callbacks
	if cb == nil {
		return nil, huma.Error404NotFound("callbacks are not enabled on this server")
	}
	if in.SdkAppid != strconv.FormatUint(cb.SDKAppID, 10) {
		s.metrics.Callback("refused_app")
		return nil, huma.Error403Forbidden("SdkAppid is not this server's app")
	}
	if cb.Token != "" {
		now := time.Now
		if cb.Now != nil {
			now = cb.Now
		}
		sec, err := strconv.ParseInt(in.RequestTime, 10, 64)
		if err != nil {
			s.metrics.Callback("refused_sign")
			return nil, huma.Error401Unauthorized("RequestTime: missing or not Unix seconds")
		}
		if d := now().Sub(time.Unix(sec, 0)); d > MaxCallbackSkew || d < -MaxCallbackSkew {
			s.metrics.Callback("refused_stale")
			return nil, huma.Error401Unauthorized("RequestTime: more than 60 s from now (a replay?)")
		}
		if subtle.ConstantTimeCompare([]byte(chatapi.CallbackSign(cb.Token, in.RequestTime)), []byte(in.Sign)) != 1 {
			s.metrics.Callback("refused_sign")
			return nil, huma.Error401Unauthorized("Sign: does not match")
		}
	}
	ok := &callbackOutput{Body: CallbackAnswer{ActionStatus: "OK"}}
	var m afterSend
	if err := json.Unmarshal(in.RawBody, &m); err != nil {
		s.metrics.Callback("refused_body")
		return nil, storeError("", &validationFailure{location: "body", reason: "not a callback's JSON: " + err.Error()})
	}
	if m.CallbackCommand != CommandAfterSend {
		s.metrics.Callback("ignored")
		return ok, nil
	}
	msg := msgindex.Message{GroupID: m.GroupID, TopicID: m.TopicID, Sender: m.From, Seq: m.MsgSeq, Time: time.Unix(m.MsgTime, 0)}
	if err := msg.Check(); err != nil {
		s.metrics.Callback("refused_body")
		return nil, storeError("", &validationFailure{location: "body", reason: err.Error()})
	}
	if err := cb.Index.Add(ctx, msg); err != nil {
		s.metrics.Callback("failed")
		return nil, storeError("message index", err)
	}
	s.metrics.Callback("indexed")
	return ok, nil
}
