package chatapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

// fuzzTransport answers every request with a fixed status and body, in
// which the text USERSIG is replaced by the request's own usersig (so the
// fuzzer can make the API echo a secret back).
type fuzzTransport struct {
	status int
	body   []byte
	sigs   []string // the usersigs seen
}

func (f *fuzzTransport) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	sig := r.URL.Query().Get("usersig")
	f.sigs = append(f.sigs, sig)
	body := bytes.ReplaceAll(f.body, []byte("USERSIG"), []byte(sig))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(f.status)
	_, _ = w.Write(body) // refused for a status without a body (204): the client sees none
}

var fuzzStatuses = []int{200, 200, 200, 200, 502, 500, 503, 404, 429, 301, 204}

// FuzzDecodeResponse feeds arbitrary answers (status and body) to every
// endpoint of the client. It checks that decoding never panics; that a nil
// error means HTTP 200 and an envelope with ActionStatus "OK" and ErrorCode
// 0; that every failure is an *Error the worker can classify (an answer
// that is not HTTP 200 or not the JSON envelope has no code and is
// retried; an ErrorCode is carried as is); and that no error text holds
// the secret key or the UserSig, even when the answer echoes them.
func FuzzDecodeResponse(f *testing.F) {
	for _, s := range []string{
		okAnswer,
		`{"ActionStatus":"FAIL","ErrorCode":10010,"ErrorInfo":"group not found"}`,
		`{"ActionStatus":"FAIL","ErrorCode":60007,"ErrorInfo":"rate"}`,
		`{"ActionStatus":"FAIL","ErrorCode":70001,"ErrorInfo":"expired USERSIG"}`,
		`{"ActionStatus":"FAIL","ErrorCode":70009,"ErrorInfo":"bad sig ` + testKey + `"}`,
		`{"ActionStatus":"OK","ErrorCode":0,"RecallRetList":[{"MsgSeq":1,"RetCode":0},{"MsgSeq":2,"RetCode":10030}]}`,
		`{"ActionStatus":"OK","ErrorCode":0,"MsgSeq":7,"MsgTime":1700000000}`,
		`{"ActionStatus":"OK","ErrorCode":0,"RspMsgList":[{"MsgSeq":1,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"x"}}]}],"IsFinished":1}`,
		`{"ActionStatus":"FAIL","ErrorInfo":"no code"}`,
		`{"ActionStatus":"MAYBE","ErrorCode":0}`,
		`{"ErrorCode":"10002"}`, `{"ErrorCode":1e99}`, `{"RecallRetList":"x"}`,
		`<html>502 Bad Gateway</html>`, ``, `null`, `[]`, `{}`, `{"ActionStatus":"OK"}{}`,
	} {
		for i := range 5 {
			f.Add(uint8(0), uint8(i), []byte(s))
		}
		f.Add(uint8(4), uint8(0), []byte(s))
	}
	f.Fuzz(func(t *testing.T, statusSel, epSel uint8, body []byte) {
		status := fuzzStatuses[int(statusSel)%len(fuzzStatuses)]
		tr := &fuzzTransport{status: status, body: body}
		c, err := New(Config{SDKAppID: testApp, SecretKey: testKey, BaseURL: "http://fuzz.invalid", MaxResponseBytes: 64 << 10})
		if err != nil {
			t.Fatal(err)
		}
		serveInMemory(t, c, tr)
		ctx := context.Background()
		seq := uint64(7)
		var callErr error
		switch epSel % 5 {
		case 0:
			_, callErr = c.ClearGroupMsg(ctx, &ClearGroupMsgRequest{GroupId: "g", MsgSeq: &seq})
		case 1:
			req := &GroupMsgRecallRequest{GroupId: "g", MsgSeqList: []MsgSeqItem{{MsgSeq: 1}, {MsgSeq: 2}}}
			resp, err := c.GroupMsgRecall(ctx, req)
			callErr = err
			if err == nil {
				n := len(resp.Succeeded()) + len(resp.Failed())
				if n != len(resp.RecallRetList) {
					t.Fatalf("Succeeded+Failed = %d, RecallRetList has %d", n, len(resp.RecallRetList))
				}
				for _, r := range resp.Failed() {
					if r.Err() == nil || Classify(r.Err()) == ClassCanceled {
						t.Fatalf("failed message %+v: Err() = %v", r, r.Err())
					}
				}
				_ = resp.Missing(req)
			}
		case 2:
			_, callErr = c.ModifyGroupMsg(ctx, &ModifyGroupMsgRequest{GroupId: "g", MsgSeq: 1, MsgBody: []MsgElement{{MsgType: "TIMTextElem", MsgContent: json.RawMessage(`{"Text":"x"}`)}}})
		case 3:
			_, callErr = c.SendGroupMsg(ctx, &SendGroupMsgRequest{GroupId: "g", MsgBody: []MsgElement{{MsgType: "TIMTextElem", MsgContent: json.RawMessage(`{"Text":"x"}`)}}})
		case 4:
			_, callErr = c.GroupMsgGetSimple(ctx, &GroupMsgGetSimpleRequest{GroupId: "g", ReqMsgNumber: 1})
		}

		var env struct {
			ActionStatus string
			ErrorCode    int
		}
		envErr := json.Unmarshal(body, &env)
		if callErr == nil {
			if status != http.StatusOK || envErr != nil || env.ActionStatus != "OK" || env.ErrorCode != 0 {
				t.Fatalf("status %d body %q: nil error, want a failure", status, body)
			}
			return
		}
		var apiErr *Error
		if !errors.As(callErr, &apiErr) {
			t.Fatalf("status %d body %q: error %v is a %T, want *Error", status, body, callErr, callErr)
		}
		switch cl := Classify(callErr); {
		case cl == ClassCanceled:
			t.Fatalf("status %d body %q: classified as canceled: %v", status, body, callErr)
		case status != http.StatusOK && (apiErr.Code != 0 || cl != ClassRetry || apiErr.HTTPStatus != status):
			t.Fatalf("HTTP %d: error %+v (class %v), want no code, retried, HTTPStatus %d", status, apiErr, cl, status)
		case status == http.StatusOK && envErr == nil && env.ErrorCode != 0 && len(body) <= 64<<10 && apiErr.Code != env.ErrorCode:
			t.Fatalf("body %q: error code %d, want %d", body, apiErr.Code, env.ErrorCode)
		case apiErr.Code == 0 && cl != ClassRetry:
			t.Fatalf("body %q: an error without a code is %v, want retried", body, cl)
		}
		text := callErr.Error() + " " + apiErr.Info
		if strings.Contains(text, testKey) {
			t.Fatalf("error text holds the secret key: %q", text)
		}
		for _, sig := range tr.sigs {
			if sig != "" && strings.Contains(text, sig) {
				t.Fatalf("error text holds the UserSig: %q", text)
			}
		}
	})
}
