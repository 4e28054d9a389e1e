package chatapi

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// wireCase pins one endpoint's request and answer on the wire.
type wireCase struct {
	name     string
	admin    string // Config.Admin; "" for the default
	call     func(ctx context.Context, c *Client) (any, error)
	wantPath string
	wantBody string // JSON, compared as decoded values
	answer   string
	want     any // the decoded answer
}

func wireCases() []wireCase {
	text := json.RawMessage(`{"Text":"hello"}`)
	return []wireCase{
		{
			name: "clear up to seq",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.ClearGroupMsg(ctx, &ClearGroupMsgRequest{GroupId: "@TGS#2J4SZEAEL", MsgSeq: ptr(uint64(100))})
			},
			wantPath: "/v4/group_open_http_svc/clear_group_msg",
			wantBody: `{"GroupId":"@TGS#2J4SZEAEL","MsgSeq":100}`,
			answer:   `{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0,"RequestId":"req-1"}`,
			want:     &ClearGroupMsgResponse{Envelope{ActionStatus: "OK", RequestID: "req-1"}},
		},
		{
			name:  "clear all history as a custom admin",
			admin: "ops_admin",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.ClearGroupMsg(ctx, &ClearGroupMsgRequest{GroupId: "custom-group"})
			},
			wantPath: "/v4/group_open_http_svc/clear_group_msg",
			wantBody: `{"GroupId":"custom-group"}`,
			answer:   okAnswer,
			want:     &ClearGroupMsgResponse{Envelope{ActionStatus: "OK"}},
		},
		{
			name: "recall",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.GroupMsgRecall(ctx, &GroupMsgRecallRequest{
					GroupId:    "@TGS#_@TGS#cQVLVHIM62CJ",
					MsgSeqList: []MsgSeqItem{{MsgSeq: 100}, {MsgSeq: 101}},
					TopicId:    "@TGS#_@TGS#cQVLVHIM62CJ@TOPIC#_TestTopic",
					Reason:     "spam",
				})
			},
			wantPath: "/v4/group_open_http_svc/group_msg_recall",
			wantBody: `{"GroupId":"@TGS#_@TGS#cQVLVHIM62CJ","MsgSeqList":[{"MsgSeq":100},{"MsgSeq":101}],
				"TopicId":"@TGS#_@TGS#cQVLVHIM62CJ@TOPIC#_TestTopic","Reason":"spam"}`,
			answer: `{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0,
				"RecallRetList":[{"MsgSeq":100,"RetCode":0},{"MsgSeq":101,"RetCode":0}]}`,
			want: &GroupMsgRecallResponse{
				Envelope:      Envelope{ActionStatus: "OK"},
				RecallRetList: []RecallRet{{MsgSeq: 100}, {MsgSeq: 101}},
			},
		},
		{
			name: "modify body and custom data",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.ModifyGroupMsg(ctx, &ModifyGroupMsgRequest{
					GroupId:         "@TGS#2J4SZEAEL",
					MsgSeq:          7,
					MsgBody:         []MsgElement{{MsgType: "TIMTextElem", MsgContent: text}},
					CloudCustomData: ptr(""),
				})
			},
			wantPath: "/v4/openim/modify_group_msg",
			wantBody: `{"GroupId":"@TGS#2J4SZEAEL","MsgSeq":7,
				"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"hello"}}],"CloudCustomData":""}`,
			answer: `{"ActionStatus":"OK","ErrorInfo":"succeed","ErrorCode":0}`,
			want:   &ModifyGroupMsgResponse{Envelope{ActionStatus: "OK", ErrorInfo: "succeed"}},
		},
		{
			name: "send",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.SendGroupMsg(ctx, &SendGroupMsgRequest{
					GroupId: "@TGS#2J4SZEAEL", Random: 4294967295,
					MsgBody:      []MsgElement{{MsgType: "TIMTextElem", MsgContent: text}},
					From_Account: "alice", CloudCustomData: "cd", TopicId: "t",
				})
			},
			wantPath: "/v4/group_open_http_svc/send_group_msg",
			wantBody: `{"GroupId":"@TGS#2J4SZEAEL","Random":4294967295,
				"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"hello"}}],
				"From_Account":"alice","CloudCustomData":"cd","TopicId":"t"}`,
			answer: `{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0,"MsgSeq":42,"MsgTime":1700000000}`,
			want:   &SendGroupMsgResponse{Envelope: Envelope{ActionStatus: "OK"}, MsgSeq: 42, MsgTime: 1700000000},
		},
		{
			name: "get simple",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.GroupMsgGetSimple(ctx, &GroupMsgGetSimpleRequest{
					GroupId: "@TGS#2J4SZEAEL", ReqMsgNumber: 2, ReqMsgSeq: 9, WithRecalledMsg: 1,
				})
			},
			wantPath: "/v4/group_open_http_svc/group_msg_get_simple",
			wantBody: `{"GroupId":"@TGS#2J4SZEAEL","ReqMsgNumber":2,"ReqMsgSeq":9,"WithRecalledMsg":1}`,
			answer: `{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0,"GroupId":"@TGS#2J4SZEAEL","IsFinished":0,
				"RspMsgList":[
				 {"MsgSeq":9,"MsgRandom":11,"MsgTimeStamp":1700000009,"From_Account":"bob","IsPlaceMsg":2,"MsgBody":[]},
				 {"MsgSeq":8,"MsgRandom":12,"MsgTimeStamp":1700000008,"From_Account":"alice","IsPlaceMsg":0,
				  "MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"hello"}}],"CloudCustomData":"cd"}]}`,
			want: &GroupMsgGetSimpleResponse{
				Envelope: Envelope{ActionStatus: "OK"}, GroupId: "@TGS#2J4SZEAEL",
				RspMsgList: []RspMsg{
					{MsgSeq: 9, MsgRandom: 11, MsgTimeStamp: 1700000009, From_Account: "bob", IsPlaceMsg: PlaceRecalled, MsgBody: []MsgElement{}},
					{MsgSeq: 8, MsgRandom: 12, MsgTimeStamp: 1700000008, From_Account: "alice", IsPlaceMsg: PlaceNormal,
						MsgBody: []MsgElement{{MsgType: "TIMTextElem", MsgContent: text}}, CloudCustomData: "cd"},
				},
			},
		},
	}
}

func TestWireFormat(t *testing.T) {
	t.Parallel()
	for _, tc := range wireCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			api := newFakeAPI(t, always(http.StatusOK, tc.answer))
			c := newTestClient(t, api.srv.URL, func(cfg *Config) { cfg.Admin = tc.admin })
			admin := tc.admin
			if admin == "" {
				admin = DefaultAdmin
			}

			got, err := tc.call(t.Context(), c)
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("answer = %+v, want %+v", got, tc.want)
			}

			reqs := api.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Method != http.MethodPost {
				t.Errorf("method = %s, want POST", r.Method)
			}
			if r.Path != tc.wantPath {
				t.Errorf("path = %s, want %s", r.Path, tc.wantPath)
			}
			if r.ContentType != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", r.ContentType)
			}
			checkQuery(t, r, admin)
			if got, want := decodeJSON(t, r.Body), decodeJSON(t, []byte(tc.wantBody)); !reflect.DeepEqual(got, want) {
				t.Errorf("body = %s\nwant %s", r.Body, tc.wantBody)
			}
		})
	}
}

// checkQuery pins the request line's query: exactly the five documented
// parameters, in the documented order, each single and well formed.
func checkQuery(t *testing.T, r recorded, admin string) {
	t.Helper()
	var names []string
	for _, kv := range strings.Split(r.RawQuery, "&") {
		name, _, _ := strings.Cut(kv, "=")
		names = append(names, name)
	}
	if want := []string{"sdkappid", "identifier", "usersig", "random", "contenttype"}; !reflect.DeepEqual(names, want) {
		t.Errorf("query names = %v, want %v", names, want)
	}
	for name, vs := range r.Query {
		if len(vs) != 1 {
			t.Errorf("query %s has %d values", name, len(vs))
		}
	}
	q := r.Query
	if got := q.Get("sdkappid"); got != strconv.FormatUint(testApp, 10) {
		t.Errorf("sdkappid = %q", got)
	}
	if got := q.Get("identifier"); got != admin {
		t.Errorf("identifier = %q, want %q", got, admin)
	}
	if _, err := strconv.ParseUint(q.Get("random"), 10, 32); err != nil {
		t.Errorf("random = %q is not a uint32: %v", q.Get("random"), err)
	}
	if got := q.Get("contenttype"); got != "json" {
		t.Errorf("contenttype = %q, want json", got)
	}
	sig := q.Get("usersig")
	if sig == "" {
		t.Fatal("usersig is empty")
	}
	doc, err := verifySig(sig, testKey, testApp, admin)
	if err != nil {
		t.Errorf("usersig does not verify: %v", err)
	}
	if doc.Expire != int64(DefaultSigTTL/time.Second) {
		t.Errorf("usersig expire = %d, want %d", doc.Expire, int64(DefaultSigTTL/time.Second))
	}
}

func TestRandomIsFreshPerRequest(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, always(http.StatusOK, okAnswer))
	var mu sync.Mutex
	next := uint32(4294967290)
	c := newTestClient(t, api.srv.URL, func(cfg *Config) {
		cfg.Rand = func() uint32 { mu.Lock(); defer mu.Unlock(); next++; return next }
	})
	for range 3 {
		if _, err := c.ClearGroupMsg(t.Context(), &ClearGroupMsgRequest{GroupId: "g"}); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, r := range api.requests() {
		got = append(got, r.Query.Get("random"))
	}
	if want := []string{"4294967291", "4294967292", "4294967293"}; !reflect.DeepEqual(got, want) {
		t.Errorf("random values = %v, want %v", got, want)
	}

	// The default source gives different values too.
	api2 := newFakeAPI(t, always(http.StatusOK, okAnswer))
	c2 := newTestClient(t, api2.srv.URL)
	for range 4 {
		if _, err := c2.ClearGroupMsg(t.Context(), &ClearGroupMsgRequest{GroupId: "g"}); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for _, r := range api2.requests() {
		seen[r.Query.Get("random")] = true
	}
	if len(seen) < 2 {
		t.Errorf("default random repeated: %v", seen)
	}
}

func TestBaseURLWithPathPrefix(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, always(http.StatusOK, okAnswer))
	c := newTestClient(t, api.srv.URL+"/im/")
	if got, want := c.BaseURL(), api.srv.URL+"/im"; got != want {
		t.Errorf("BaseURL() = %q, want %q", got, want)
	}
	if _, err := c.ClearGroupMsg(t.Context(), &ClearGroupMsgRequest{GroupId: "g"}); err != nil {
		t.Fatal(err)
	}
	if got := api.requests()[0].Path; got != "/im/v4/group_open_http_svc/clear_group_msg" {
		t.Errorf("path = %s", got)
	}
}

func TestNilRequest(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, always(http.StatusOK, okAnswer))
	c := newTestClient(t, api.srv.URL)
	calls := map[string]func() error{
		"clear":      func() error { _, err := c.ClearGroupMsg(t.Context(), nil); return err },
		"recall":     func() error { _, err := c.GroupMsgRecall(t.Context(), nil); return err },
		"modify":     func() error { _, err := c.ModifyGroupMsg(t.Context(), nil); return err },
		"send":       func() error { _, err := c.SendGroupMsg(t.Context(), nil); return err },
		"get simple": func() error { _, err := c.GroupMsgGetSimple(t.Context(), nil); return err },
	}
	for name, call := range calls {
		err := call()
		if err == nil || !strings.Contains(err.Error(), "nil request") {
			t.Errorf("%s: err = %v, want nil request", name, err)
		}
		if Classify(err) != ClassPermanent {
			t.Errorf("%s: class = %v, want permanent", name, Classify(err))
		}
	}
	if n := len(api.requests()); n != 0 {
		t.Errorf("%d requests sent, want 0", n)
	}
}

// errCase is one failing answer and the *Error it must become.
type errCase struct {
	name       string
	status     int
	body       string
	maxBody    int64
	wantCode   int
	wantStatus int
	wantInfo   string // prefix of Info
	wantReqID  string
	wantClass  Class
	wantMsg    string // substring of Error()
}

func TestAnswerErrors(t *testing.T) {
	t.Parallel()
	bigOK := `{"ActionStatus":"OK","ErrorInfo":"` + strings.Repeat("x", 200) + `","ErrorCode":0}`
	cases := []errCase{
		{name: "group missing", status: 200,
			body:     `{"ActionStatus":"FAIL","ErrorInfo":"group not found","ErrorCode":10010,"RequestId":"rq-9"}`,
			wantCode: 10010, wantStatus: 200, wantInfo: "group not found", wantReqID: "rq-9", wantClass: ClassPermanent,
			wantMsg: "chatapi: clear_group_msg: ErrorCode 10010: group not found"},
		{name: "internal error retries", status: 200,
			body:     `{"ActionStatus":"FAIL","ErrorInfo":"internal","ErrorCode":10002}`,
			wantCode: 10002, wantStatus: 200, wantInfo: "internal", wantClass: ClassRetry},
		{name: "rate limit throttles", status: 200,
			body:     `{"ActionStatus":"FAIL","ErrorInfo":"too many","ErrorCode":60007}`,
			wantCode: 60007, wantStatus: 200, wantInfo: "too many", wantClass: ClassThrottle},
		{name: "non-zero code with OK status is still an error", status: 200,
			body:     `{"ActionStatus":"OK","ErrorInfo":"odd","ErrorCode":10004}`,
			wantCode: 10004, wantStatus: 200, wantInfo: "odd", wantClass: ClassPermanent},
		{name: "FAIL without a code", status: 200,
			body:       `{"ActionStatus":"FAIL","ErrorInfo":"what","ErrorCode":0}`,
			wantStatus: 200, wantInfo: "ActionStatus FAIL without an ErrorCode: what", wantClass: ClassRetry},
		{name: "JSON that is not the envelope", status: 200, body: `{"hello":1}`,
			wantStatus: 200, wantInfo: "answer is not the API envelope: ", wantClass: ClassRetry},
		{name: "HTTP 502 with an HTML page", status: 502,
			body:       `<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>`,
			wantStatus: 502, wantInfo: `Bad Gateway: "<html><head><title>502 Bad Gateway`, wantClass: ClassRetry,
			wantMsg: "chatapi: clear_group_msg: HTTP 502: Bad Gateway: "},
		{name: "HTTP 404 with a JSON envelope is still a status error", status: 404, body: okAnswer,
			wantStatus: 404, wantInfo: "Not Found: ", wantClass: ClassRetry},
		{name: "HTTP 302 is not followed", status: 302, body: "",
			wantStatus: 302, wantInfo: `Found: ""`, wantClass: ClassRetry},
		{name: "200 that is not JSON", status: 200, body: "<html>maintenance</html>",
			wantStatus: 200, wantInfo: `answer is not JSON: "<html>maintenance</html>"`, wantClass: ClassRetry,
			wantMsg: `chatapi: clear_group_msg: answer is not JSON: "<html>maintenance</html>"`},
		{name: "long non-JSON is truncated", status: 200, body: strings.Repeat("y", 5000),
			wantStatus: 200, wantInfo: `answer is not JSON: "` + strings.Repeat("y", snippetLen) + `"...`, wantClass: ClassRetry},
		{name: "empty 200", status: 200, body: "",
			wantStatus: 200, wantInfo: `answer is not JSON: ""`, wantClass: ClassRetry},
		{name: "oversized answer", status: 200, body: bigOK, maxBody: 64,
			wantStatus: 200, wantInfo: "answer is larger than 64 bytes", wantClass: ClassRetry},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			api := newFakeAPI(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
				if tc.status == 302 {
					w.Header().Set("Location", "http://example.invalid/elsewhere")
				}
				reply(w, tc.status, tc.body)
			})
			c := newTestClient(t, api.srv.URL, func(cfg *Config) { cfg.MaxResponseBytes = tc.maxBody })
			resp, err := c.ClearGroupMsg(t.Context(), &ClearGroupMsgRequest{GroupId: "g"})
			if resp != nil {
				t.Errorf("answer = %+v, want nil with an error", resp)
			}
			var apiErr *Error
			if !errors.As(err, &apiErr) {
				t.Fatalf("err = %T %v, want *Error", err, err)
			}
			if apiErr.Endpoint != EndpointClear || apiErr.Code != tc.wantCode || apiErr.HTTPStatus != tc.wantStatus ||
				apiErr.RequestID != tc.wantReqID || !strings.HasPrefix(apiErr.Info, tc.wantInfo) {
				t.Errorf("err = %#v\nwant Code %d HTTPStatus %d RequestID %q Info prefix %q",
					apiErr, tc.wantCode, tc.wantStatus, tc.wantReqID, tc.wantInfo)
			}
			if tc.wantCode != 0 && apiErr.Err != nil {
				t.Errorf("API error has Err = %v, want nil", apiErr.Err)
			}
			if got := Classify(err); got != tc.wantClass {
				t.Errorf("Classify = %v, want %v", got, tc.wantClass)
			}
			if got := apiErr.Class(); got != tc.wantClass {
				t.Errorf("Class() = %v, want %v", got, tc.wantClass)
			}
			if tc.wantMsg != "" && !strings.HasPrefix(err.Error(), tc.wantMsg) {
				t.Errorf("Error() = %q, want prefix %q", err.Error(), tc.wantMsg)
			}
			if n := len(api.requests()); n != 1 {
				t.Errorf("%d requests, want 1 (only resign codes repeat)", n)
			}
		})
	}
}

func TestAnswerExactlyMaxBytesIsAccepted(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, always(http.StatusOK, okAnswer))
	c := newTestClient(t, api.srv.URL, func(cfg *Config) { cfg.MaxResponseBytes = int64(len(okAnswer)) })
	if _, err := c.ClearGroupMsg(t.Context(), &ClearGroupMsgRequest{GroupId: "g"}); err != nil {
		t.Fatalf("answer of exactly MaxResponseBytes: %v", err)
	}
}

func TestTransportErrors(t *testing.T) {
	t.Parallel()

	t.Run("connection refused", func(t *testing.T) {
		t.Parallel()
		api := newFakeAPI(t, always(http.StatusOK, okAnswer))
		api.srv.Close()
		c := newTestClient(t, api.srv.URL)
		sigs := recordSigs(c)
		_, err := c.ClearGroupMsg(t.Context(), &ClearGroupMsgRequest{GroupId: "g"})
		var apiErr *Error
		if !errors.As(err, &apiErr) {
			t.Fatalf("err = %T %v, want *Error", err, err)
		}
		if apiErr.Code != 0 || apiErr.HTTPStatus != 0 || apiErr.Err == nil {
			t.Errorf("err = %#v, want Code 0, HTTPStatus 0, Err set", apiErr)
		}
		if Classify(err) != ClassRetry || !apiErr.Retryable() {
			t.Errorf("Classify = %v, want retry", Classify(err))
		}
		if !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), "usersig=REDACTED") {
			t.Errorf("Error() = %q, want the refused URL with usersig redacted", err)
		}
		assertErrNoSecrets(t, err, sigs.all()...)
	})

	t.Run("client timeout", func(t *testing.T) {
		t.Parallel()
		api := newFakeAPI(t, hang)
		c := newTestClient(t, api.srv.URL, func(cfg *Config) { cfg.Timeout = 100 * time.Millisecond })
		sigs := recordSigs(c)
		start := time.Now()
		_, err := c.ClearGroupMsg(t.Context(), &ClearGroupMsgRequest{GroupId: "g"})
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("timed out after %s, want about 100ms", d)
		}
		var apiErr *Error
		if !errors.As(err, &apiErr) || apiErr.Code != 0 {
			t.Fatalf("err = %T %v, want *Error with Code 0", err, err)
		}
		var timeout interface{ Timeout() bool }
		if !errors.As(err, &timeout) || !timeout.Timeout() {
			t.Errorf("err = %v, want a timeout in its chain", err)
		}
		if Classify(err) != ClassRetry {
			t.Errorf("Classify = %v, want retry", Classify(err))
		}
		if !strings.Contains(err.Error(), "usersig=REDACTED") {
			t.Errorf("Error() = %q, want the URL with usersig redacted", err)
		}
		assertErrNoSecrets(t, err, sigs.all()...)
	})

	t.Run("caller deadline is retry, not canceled", func(t *testing.T) {
		t.Parallel()
		api := newFakeAPI(t, hang)
		c := newTestClient(t, api.srv.URL)
		sigs := recordSigs(c)
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		_, err := c.ClearGroupMsg(ctx, &ClearGroupMsgRequest{GroupId: "g"})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want DeadlineExceeded in chain", err)
		}
		if Classify(err) != ClassRetry {
			t.Errorf("Classify = %v, want retry", Classify(err))
		}
		assertErrNoSecrets(t, err, sigs.all()...)
	})

	// A server that takes the connection but never answers the TLS
	// handshake holds the call only until the timeout.
	t.Run("TLS handshake never answered", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				defer conn.Close() // held open, silent, until the test ends
			}
		}()
		c := newTestClient(t, "https://"+ln.Addr().String(), func(cfg *Config) { cfg.Timeout = 200 * time.Millisecond })
		start := time.Now()
		_, err = c.ClearGroupMsg(t.Context(), &ClearGroupMsgRequest{GroupId: "g"})
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("the call returned after %s, want about the 200ms timeout", d)
		}
		var apiErr *Error
		if !errors.As(err, &apiErr) || apiErr.Code != 0 || Classify(err) != ClassRetry {
			t.Fatalf("err = %v, want a retryable transport *Error", err)
		}
	})
}

func TestCancel(t *testing.T) {
	t.Parallel()

	// A call in flight is cut off at once by its cancel, well before its
	// timeout; the API may or may not have applied it.
	t.Run("in flight", func(t *testing.T) {
		t.Parallel()
		arrived := make(chan struct{})
		api := newFakeAPI(t, func(w http.ResponseWriter, r *http.Request, n int) {
			close(arrived)
			hang(w, r, n)
		})
		c := newTestClient(t, api.srv.URL, func(cfg *Config) { cfg.Timeout = time.Minute })
		sigs := recordSigs(c)
		ctx, cancel := context.WithCancel(t.Context())
		go func() { <-arrived; cancel() }()
		start := time.Now()
		_, err := c.GroupMsgRecall(ctx, &GroupMsgRecallRequest{GroupId: "g", MsgSeqList: []MsgSeqItem{{MsgSeq: 1}}})
		if d := time.Since(start); d > 30*time.Second {
			t.Errorf("the canceled call returned after %s, want at once (timeout a minute)", d)
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled in chain", err)
		}
		if got := Classify(err); got != ClassCanceled {
			t.Errorf("Classify = %v, want canceled", got)
		}
		assertErrNoSecrets(t, err, sigs.all()...)
	})

	t.Run("before sending", func(t *testing.T) {
		t.Parallel()
		api := newFakeAPI(t, always(http.StatusOK, okAnswer))
		c := newTestClient(t, api.srv.URL)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := c.ClearGroupMsg(ctx, &ClearGroupMsgRequest{GroupId: "g"})
		if !errors.Is(err, context.Canceled) || Classify(err) != ClassCanceled {
			t.Errorf("err = %v (class %v), want canceled", err, Classify(err))
		}
		if n := len(api.requests()); n != 0 {
			t.Errorf("%d requests sent, want 0", n)
		}
	})
}

func TestResign(t *testing.T) {
	t.Parallel()
	for _, code := range []int{70001, 70052} {
		t.Run(strconv.Itoa(code)+" then OK", func(t *testing.T) {
			t.Parallel()
			refusal := `{"ActionStatus":"FAIL","ErrorInfo":"sig expired","ErrorCode":` + strconv.Itoa(code) + `}`
			api := newFakeAPI(t, func(w http.ResponseWriter, _ *http.Request, n int) {
				if n == 1 {
					reply(w, 200, refusal)
					return
				}
				reply(w, 200, `{"ActionStatus":"OK","ErrorInfo":"succeed","ErrorCode":0}`)
			})
			var mu sync.Mutex
			var seen []CallInfo
			c := newTestClient(t, api.srv.URL, func(cfg *Config) {
				cfg.Observer = func(ci CallInfo) { mu.Lock(); seen = append(seen, ci); mu.Unlock() }
			})
			resp, err := c.ModifyGroupMsg(t.Context(), &ModifyGroupMsgRequest{GroupId: "g", MsgSeq: 1, CloudCustomData: ptr("x")})
			if err != nil {
				t.Fatalf("err = %v, want success after re-signing", err)
			}
			if resp.ErrorInfo != "succeed" {
				t.Errorf("answer = %+v", resp)
			}
			reqs := api.requests()
			if len(reqs) != 2 {
				t.Fatalf("%d requests, want exactly 2", len(reqs))
			}
			s1, s2 := reqs[0].Query.Get("usersig"), reqs[1].Query.Get("usersig")
			if s1 == s2 {
				t.Error("the repeat used the refused usersig")
			}
			for _, s := range []string{s1, s2} {
				if _, err := verifySig(s, testKey, testApp, DefaultAdmin); err != nil {
					t.Errorf("usersig does not verify: %v", err)
				}
			}
			if !reflect.DeepEqual(reqs[0].Body, reqs[1].Body) || reqs[0].Path != reqs[1].Path {
				t.Error("the repeat is not the same call")
			}
			if reqs[0].Query.Get("random") == "" || reqs[1].Query.Get("random") == "" {
				t.Error("random missing")
			}

			// The new sig is cached for the next call.
			if _, err := c.ModifyGroupMsg(t.Context(), &ModifyGroupMsgRequest{GroupId: "g", MsgSeq: 1}); err != nil {
				t.Fatal(err)
			}
			if s3 := api.requests()[2].Query.Get("usersig"); s3 != s2 {
				t.Error("the call after re-signing did not reuse the new sig")
			}

			mu.Lock()
			defer mu.Unlock()
			if len(seen) != 3 || seen[0].Attempt != 1 || seen[0].Code != code || seen[0].Err == nil ||
				seen[1].Attempt != 2 || seen[1].Code != 0 || seen[1].Err != nil || seen[1].HTTPStatus != 200 ||
				seen[2].Attempt != 1 {
				t.Errorf("observed %+v", seen)
			}
		})
	}

	t.Run("refused twice", func(t *testing.T) {
		t.Parallel()
		api := newFakeAPI(t, always(200, `{"ActionStatus":"FAIL","ErrorInfo":"sig expired","ErrorCode":70001}`))
		c := newTestClient(t, api.srv.URL)
		_, err := c.ClearGroupMsg(t.Context(), &ClearGroupMsgRequest{GroupId: "g"})
		var apiErr *Error
		if !errors.As(err, &apiErr) || apiErr.Code != 70001 {
			t.Fatalf("err = %v, want *Error 70001", err)
		}
		if Classify(err) != ClassResign {
			t.Errorf("Classify = %v, want resign", Classify(err))
		}
		if n := len(api.requests()); n != 2 {
			t.Errorf("%d requests, want exactly 2", n)
		}
	})

	t.Run("other codes do not repeat", func(t *testing.T) {
		t.Parallel()
		api := newFakeAPI(t, always(200, `{"ActionStatus":"FAIL","ErrorInfo":"bad sig","ErrorCode":70003}`))
		c := newTestClient(t, api.srv.URL)
		if _, err := c.ClearGroupMsg(t.Context(), &ClearGroupMsgRequest{GroupId: "g"}); err == nil {
			t.Fatal("want an error")
		}
		if n := len(api.requests()); n != 1 {
			t.Errorf("%d requests, want 1", n)
		}
	})
}

func TestConcurrentCallsShareOneSig(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, always(http.StatusOK, okAnswer))
	c := newTestClient(t, api.srv.URL)
	sigs := recordSigs(c)
	const workers, calls = 32, 4
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range calls {
				if _, err := c.ClearGroupMsg(t.Context(), &ClearGroupMsgRequest{GroupId: "g"}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	reqs := api.requests()
	if len(reqs) != workers*calls {
		t.Fatalf("%d requests, want %d", len(reqs), workers*calls)
	}
	distinct := map[string]bool{}
	for _, r := range reqs {
		distinct[r.Query.Get("usersig")] = true
	}
	if len(distinct) != 1 {
		t.Errorf("%d distinct usersigs, want 1", len(distinct))
	}
	if n := len(sigs.all()); n != 1 {
		t.Errorf("GenUserSig called %d times, want 1", n)
	}
}

func TestConcurrentRefusalsResignOnce(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var first string
	api := newFakeAPI(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		sig := r.URL.Query().Get("usersig")
		mu.Lock()
		if first == "" {
			first = sig
		}
		refuse := sig == first
		mu.Unlock()
		if refuse {
			reply(w, 200, `{"ActionStatus":"FAIL","ErrorInfo":"expired","ErrorCode":70001}`)
			return
		}
		reply(w, 200, okAnswer)
	})
	c := newTestClient(t, api.srv.URL)
	sigs := recordSigs(c)
	// Sign before the goroutines start so that they all share the first sig.
	if _, err := c.sig.get(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 24 {
		wg.Go(func() {
			if _, err := c.ClearGroupMsg(t.Context(), &ClearGroupMsgRequest{GroupId: "g"}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	// Re-signing within the same second may call GenUserSig twice (see
	// signer.get), but yields one new sig.
	made := map[string]bool{}
	for _, s := range sigs.all() {
		made[s] = true
	}
	if len(made) != 2 {
		t.Errorf("%d distinct sigs made, want 2 (one re-sign for many refusals)", len(made))
	}
	distinct := map[string]bool{}
	for _, r := range api.requests() {
		distinct[r.Query.Get("usersig")] = true
	}
	if len(distinct) != 2 {
		t.Errorf("%d distinct usersigs on the wire, want 2", len(distinct))
	}
}

func TestObserver(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, func(w http.ResponseWriter, _ *http.Request, n int) {
		if n == 1 {
			reply(w, 200, `{"ActionStatus":"FAIL","ErrorInfo":"busy","ErrorCode":60018,"RequestId":"r1"}`)
			return
		}
		reply(w, 502, "bad gateway")
	})
	var seen []CallInfo
	c := newTestClient(t, api.srv.URL, func(cfg *Config) {
		cfg.Observer = func(ci CallInfo) { seen = append(seen, ci) }
	})
	_, err1 := c.SendGroupMsg(t.Context(), &SendGroupMsgRequest{GroupId: "g"})
	_, err2 := c.SendGroupMsg(t.Context(), &SendGroupMsgRequest{GroupId: "g"})
	if len(seen) != 2 {
		t.Fatalf("observed %d attempts, want 2", len(seen))
	}
	a, b := seen[0], seen[1]
	if a.Endpoint != EndpointSend || a.Attempt != 1 || a.Code != 60018 || a.HTTPStatus != 200 ||
		a.RequestID != "r1" || a.Err != err1 || a.Duration <= 0 {
		t.Errorf("first = %+v", a)
	}
	if b.Code != 0 || b.HTTPStatus != 502 || b.Err != err2 {
		t.Errorf("second = %+v", b)
	}
}

func TestSigRenewal(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, always(http.StatusOK, okAnswer))
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := newTestClient(t, api.srv.URL, func(cfg *Config) {
		cfg.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	})
	sigs := recordSigs(c)
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	call := func() {
		t.Helper()
		if _, err := c.ClearGroupMsg(t.Context(), &ClearGroupMsgRequest{GroupId: "g"}); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(sigs.all()); n != 0 {
		t.Fatalf("New signed %d times, want 0 (sign ahead of use)", n)
	}
	call()
	advance(DefaultSigTTL*3/4 - time.Second) // just over a quarter left
	call()
	if n := len(sigs.all()); n != 1 {
		t.Errorf("signed %d times with over a quarter of the life left, want 1", n)
	}
	advance(time.Second) // a quarter left: renew
	call()
	call()
	if n := len(sigs.all()); n != 2 {
		t.Errorf("signed %d times after three quarters of the life, want 2", n)
	}
}

func TestResignNeverRepeatsRefusedSig(t *testing.T) {
	t.Parallel()
	// Signing twice within one second gives the same bytes; a re-sign after
	// a refusal must still differ.
	c := newTestClient(t, "http://127.0.0.1:1")
	s1, err := c.sig.get()
	if err != nil {
		t.Fatal(err)
	}
	c.sig.invalidate(s1)
	s2, err := c.sig.get()
	if err != nil {
		t.Fatal(err)
	}
	if s1 == s2 {
		t.Fatal("re-sign returned the refused sig")
	}
	if _, err := verifySig(s2, testKey, testApp, DefaultAdmin); err != nil {
		t.Errorf("new sig does not verify: %v", err)
	}
	// A stale invalidate (of a sig no longer cached) keeps the cache.
	c.sig.invalidate(s1)
	if s3, _ := c.sig.get(); s3 != s2 {
		t.Error("stale invalidate dropped the current sig")
	}
}

func TestAnswerCutShort(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(200)
		_, _ = w.Write([]byte(`{"ActionStatus":`))
		if hj, ok := w.(http.Hijacker); ok {
			w.(http.Flusher).Flush()
			conn, _, err := hj.Hijack()
			if err == nil {
				_ = conn.Close()
			}
		}
	})
	c := newTestClient(t, api.srv.URL)
	sigs := recordSigs(c)
	_, err := c.ClearGroupMsg(t.Context(), &ClearGroupMsgRequest{GroupId: "g"})
	var apiErr *Error
	if !errors.As(err, &apiErr) || apiErr.Code != 0 || apiErr.HTTPStatus != 200 || apiErr.Err == nil {
		t.Fatalf("err = %#v, want a transport *Error after the status line", err)
	}
	if Classify(err) != ClassRetry {
		t.Errorf("Classify = %v, want retry", Classify(err))
	}
	assertErrNoSecrets(t, err, sigs.all()...)
}

func TestSigningFailure(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, always(http.StatusOK, okAnswer))
	c := newTestClient(t, api.srv.URL)
	c.sig.sign = func(int) (string, error) { return "", errors.New("zlib broke") }
	_, err := c.ClearGroupMsg(t.Context(), &ClearGroupMsgRequest{GroupId: "g"})
	if err == nil || !strings.Contains(err.Error(), "chatapi: clear_group_msg: sign UserSig: zlib broke") {
		t.Errorf("err = %v", err)
	}
	if n := len(api.requests()); n != 0 {
		t.Errorf("%d requests sent without a sig", n)
	}
}
