package chatapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Client calls the Tencent Cloud Chat REST API as the app admin. It is safe
// for concurrent use; make one per SDKAppID and share it.
//
// Every method sends one POST to {base}/v4/{endpoint} with the query
// sdkappid, identifier, usersig, random (a fresh uint32) and contenttype=json,
// and a JSON body. It returns the decoded answer and a nil error when the
// answer's ActionStatus is "OK" and its ErrorCode 0. Otherwise it returns a
// nil answer and:
//   - an *Error with Code and Info from the answer when the API refused the
//     call (ActionStatus "FAIL" or ErrorCode != 0);
//   - an *Error with Code 0 when the call failed below the API: connection
//     refused or reset, timeout, HTTP status other than 200, an answer that is
//     not JSON or is larger than Config.MaxResponseBytes;
//   - an error wrapping context.Canceled when ctx was canceled (Classify
//     reports ClassCanceled). A call canceled before it is sent returns at
//     once and sends nothing; one canceled while in flight is cut off at
//     once, as net/http does, and the API may or may not have applied it
//     (every operation timq sends is idempotent, so the caller may repeat
//     it). Config.Timeout (or ctx's deadline, if sooner) bounds an attempt
//     the same way;
//   - another error for misuse, such as a nil request.
//
// When the API answers 70001 (UserSig expired) or 70052 (UserSig
// invalidated), the client drops its cached UserSig, signs a new one and
// repeats the call exactly once; the second answer is final.
type Client struct {
	base     string // "https://console.tim.qq.com", no trailing slash
	app      string // SDKAppID, decimal
	admin    string
	tr       *transport
	maxBody  int64
	rand     func() uint32
	observer func(CallInfo)
	sig      *signer
	scrub    scrubber
}

// CallInfo describes one HTTP attempt, for Config.Observer.
type CallInfo struct {
	Endpoint   Endpoint
	Attempt    int           // 1, or 2 for the repeat after a UserSig refusal
	Duration   time.Duration // from sending the request to reading the answer
	HTTPStatus int           // 0 when no answer arrived
	Code       int           // the answer's ErrorCode; 0 on success or transport failure
	RequestID  string        // the answer's RequestId, if any
	Err        error         // the attempt's error (secrets redacted); nil on success
}

// New validates cfg, applies defaults and returns a Client. Validation errors
// name the Config field at fault, for example "chatapi: SDKAppID: must be set".
// New does not sign a UserSig or touch the network; the first call does.
func New(cfg Config) (*Client, error) {
	cfg, base, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	tr, err := newTransport(base, cfg.Timeout, cfg.MaxConns, cfg.MaxResponseBytes, cfg.HTTPClient)
	if err != nil {
		return nil, fmt.Errorf("chatapi: %w", err)
	}
	return &Client{
		base:     base,
		app:      strconv.FormatUint(cfg.SDKAppID, 10),
		admin:    cfg.Admin,
		tr:       tr,
		maxBody:  cfg.MaxResponseBytes,
		rand:     cfg.Rand,
		observer: cfg.Observer,
		sig:      newSigner(cfg),
		scrub:    newScrubber(cfg.SecretKey),
	}, nil
}

// BaseURL returns the base the client sends requests to, without a trailing
// slash.
func (c *Client) BaseURL() string { return c.base }

// ClearGroupMsg clears (marks deleted) a group's messages with seq <=
// req.MsgSeq, or all of them when req.MsgSeq is nil.
func (c *Client) ClearGroupMsg(ctx context.Context, req *ClearGroupMsgRequest) (*ClearGroupMsgResponse, error) {
	return call[ClearGroupMsgResponse](ctx, c, EndpointClear, req)
}

// GroupMsgRecall recalls up to MaxRecallPerCall messages of a group. The call
// can succeed while single messages fail: a nil error means the API accepted
// the call, and the answer's RecallRetList (see Succeeded and Failed) holds
// each message's outcome.
func (c *Client) GroupMsgRecall(ctx context.Context, req *GroupMsgRecallRequest) (*GroupMsgRecallResponse, error) {
	return call[GroupMsgRecallResponse](ctx, c, EndpointRecall, req)
}

// ModifyGroupMsg replaces the body and/or CloudCustomData of one group message.
func (c *Client) ModifyGroupMsg(ctx context.Context, req *ModifyGroupMsgRequest) (*ModifyGroupMsgResponse, error) {
	return call[ModifyGroupMsgResponse](ctx, c, EndpointModify, req)
}

// SendGroupMsg sends a message to a group and returns its MsgSeq and MsgTime.
func (c *Client) SendGroupMsg(ctx context.Context, req *SendGroupMsgRequest) (*SendGroupMsgResponse, error) {
	return call[SendGroupMsgResponse](ctx, c, EndpointSend, req)
}

// GroupMsgGetSimple pulls up to 20 of a group's messages, newest first.
func (c *Client) GroupMsgGetSimple(ctx context.Context, req *GroupMsgGetSimpleRequest) (*GroupMsgGetSimpleResponse, error) {
	return call[GroupMsgGetSimpleResponse](ctx, c, EndpointGetSimple, req)
}

// answer is implemented by every response type through its embedded Envelope.
type answer interface{ envelope() *Envelope }

func (e *Envelope) envelope() *Envelope { return e }

// call is the one pipeline behind every method: encode, sign, send, check,
// and repeat once after a UserSig refusal.
func call[T any, PT interface {
	*T
	answer
}, Req any](ctx context.Context, c *Client, ep Endpoint, req *Req) (*T, error) {
	if req == nil {
		return nil, fmt.Errorf("chatapi: %s: nil request", ep.Short())
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("chatapi: %s: encode request: %w", ep.Short(), err)
	}
	for attempt := 1; ; attempt++ {
		sig, err := c.sig.get()
		if err != nil {
			return nil, fmt.Errorf("chatapi: %s: sign UserSig: %w", ep.Short(), err)
		}
		out := PT(new(T))
		err = c.do(ctx, ep, attempt, sig, body, out)
		if err == nil {
			return out, nil
		}
		var apiErr *Error
		if attempt == 1 && errors.As(err, &apiErr) && ClassifyCode(apiErr.Code) == ClassResign {
			c.sig.invalidate(sig)
			continue
		}
		return nil, err
	}
}

// do sends one HTTP attempt and decodes the answer into out. Its errors carry
// no secret.
func (c *Client) do(ctx context.Context, ep Endpoint, attempt int, sig string, body []byte, out answer) (err error) {
	info := CallInfo{Endpoint: ep, Attempt: attempt}
	start := time.Now()
	defer func() {
		if c.observer != nil {
			info.Duration = time.Since(start)
			info.Err = err
			c.observer(info)
		}
	}()

	if err := ctx.Err(); err != nil {
		return c.transportError(ctx, ep, 0, sig, err) // nothing sent
	}
	deadline := time.Now().Add(c.tr.timeout)
	ctxDeadline, bound := ctx.Deadline()
	if bound && ctxDeadline.Before(deadline) {
		deadline = ctxDeadline
	}
	status, data, err := c.tr.post(ctx, c.requestURL(ep, sig), body, deadline)
	info.HTTPStatus = status
	switch {
	case errors.Is(err, errAnswerTooLarge):
		return &Error{Endpoint: ep, HTTPStatus: status,
			Info: fmt.Sprintf("answer is larger than %d bytes", c.maxBody)}
	case err != nil:
		if bound && !time.Now().Before(ctxDeadline) && !errors.Is(err, context.DeadlineExceeded) {
			// The caller's deadline, not the client's timeout, ended it.
			err = fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
		}
		return c.transportError(ctx, ep, status, sig, err)
	}
	if status != http.StatusOK {
		return &Error{Endpoint: ep, HTTPStatus: status,
			Info: http.StatusText(status) + ": " + c.snippet(data, sig)}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return &Error{Endpoint: ep, HTTPStatus: status,
			Info: "answer is not JSON: " + c.snippet(data, sig)}
	}
	env := out.envelope()
	info.Code, info.RequestID = env.ErrorCode, env.RequestID
	switch {
	case env.ErrorCode != 0:
		return &Error{Endpoint: ep, Code: env.ErrorCode, Info: c.scrub(env.ErrorInfo, sig),
			HTTPStatus: status, RequestID: env.RequestID}
	case env.ActionStatus == "OK":
		return nil
	case env.ActionStatus == "FAIL":
		return &Error{Endpoint: ep, HTTPStatus: status, RequestID: env.RequestID,
			Info: c.scrub("ActionStatus FAIL without an ErrorCode: "+env.ErrorInfo, sig)}
	default:
		return &Error{Endpoint: ep, HTTPStatus: status, RequestID: env.RequestID,
			Info: "answer is not the API envelope: " + c.snippet(data, sig)}
	}
}

// snippet quotes the start of an unexpected answer for an error, with
// secrets scrubbed from the whole body first so that truncation cannot leave
// part of one behind.
func (c *Client) snippet(data []byte, sig string) string {
	return snippet([]byte(c.scrub(string(data), sig)))
}

// requestURL builds the request line's URL, query parameters in the order
// Tencent documents them.
func (c *Client) requestURL(ep Endpoint, sig string) string {
	return c.base + "/v4/" + string(ep) +
		"?sdkappid=" + c.app +
		"&identifier=" + url.QueryEscape(c.admin) +
		"&usersig=" + url.QueryEscape(sig) +
		"&random=" + strconv.FormatUint(uint64(c.rand()), 10) +
		"&contenttype=json"
}

// transportError turns a failure to get an answer into the error a method
// returns: a wrapped context.Canceled when the caller canceled, otherwise an
// *Error with Code 0. Either way the usersig in the URL is redacted.
func (c *Client) transportError(ctx context.Context, ep Endpoint, status int, sig string, err error) error {
	err = c.scrub.redactErr(err, sig)
	if errors.Is(ctx.Err(), context.Canceled) {
		if errors.Is(err, context.Canceled) {
			return fmt.Errorf("chatapi: %s: %w", ep.Short(), err)
		}
		return fmt.Errorf("chatapi: %s: %w: %w", ep.Short(), ctx.Err(), err)
	}
	return &Error{Endpoint: ep, HTTPStatus: status, Info: err.Error(), Err: err}
}
