package chatapi

import (
	"errors"
	"net/http"
	"reflect"
	"testing"
)

func TestRecallPartialResults(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, always(http.StatusOK, `{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0,
		"RecallRetList":[{"MsgSeq":100,"RetCode":10030},{"MsgSeq":101,"RetCode":0},
		                 {"MsgSeq":102,"RetCode":10002},{"MsgSeq":103,"RetCode":0}]}`))
	c := newTestClient(t, api.srv.URL)
	req := &GroupMsgRecallRequest{GroupId: "@TGS#2J4SZEAEL",
		MsgSeqList: []MsgSeqItem{{MsgSeq: 100}, {MsgSeq: 101}, {MsgSeq: 102}, {MsgSeq: 103}, {MsgSeq: 104}}}
	resp, err := c.GroupMsgRecall(t.Context(), req)
	if err != nil {
		t.Fatalf("a partly failed recall is not a call error: %v", err)
	}
	if got, want := resp.Succeeded(), []uint64{101, 103}; !reflect.DeepEqual(got, want) {
		t.Errorf("Succeeded = %v, want %v", got, want)
	}
	wantFailed := []RecallRet{{MsgSeq: 100, RetCode: 10030}, {MsgSeq: 102, RetCode: 10002}}
	if got := resp.Failed(); !reflect.DeepEqual(got, wantFailed) {
		t.Errorf("Failed = %v, want %v", got, wantFailed)
	}
	if got, want := resp.Missing(req), []uint64{104}; !reflect.DeepEqual(got, want) {
		t.Errorf("Missing = %v, want %v", got, want)
	}

	failed := resp.Failed()
	if failed[0].OK() || failed[0].Class() != ClassPermanent || failed[1].Class() != ClassRetry {
		t.Errorf("per-message classes: %v %v", failed[0].Class(), failed[1].Class())
	}
	var apiErr *Error
	if err := failed[1].Err(); !errors.As(err, &apiErr) || apiErr.Code != 10002 || apiErr.Endpoint != EndpointRecall ||
		Classify(err) != ClassRetry {
		t.Errorf("Err() = %#v", err)
	}
	if err := (RecallRet{MsgSeq: 101}).Err(); err != nil {
		t.Errorf("Err() of a success = %v", err)
	}
}

func TestRecallHelpersOnEmpty(t *testing.T) {
	t.Parallel()
	var nilResp *GroupMsgRecallResponse
	if nilResp.Succeeded() != nil || nilResp.Failed() != nil || nilResp.Missing(nil) != nil {
		t.Error("nil answer helpers should return nil")
	}
	req := &GroupMsgRecallRequest{MsgSeqList: []MsgSeqItem{{MsgSeq: 1}}}
	if got := nilResp.Missing(req); !reflect.DeepEqual(got, []uint64{1}) {
		t.Errorf("Missing of a nil answer = %v, want every seq", got)
	}
	all := &GroupMsgRecallResponse{RecallRetList: []RecallRet{{MsgSeq: 1}}}
	if all.Failed() != nil || all.Missing(req) != nil {
		t.Error("a full success has no failures or missing seqs")
	}
}

func TestRecallWholeCallFailure(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, always(http.StatusOK, `{"ActionStatus":"FAIL","ErrorInfo":"recall disabled","ErrorCode":10041}`))
	c := newTestClient(t, api.srv.URL)
	resp, err := c.GroupMsgRecall(t.Context(), &GroupMsgRecallRequest{GroupId: "g", MsgSeqList: []MsgSeqItem{{MsgSeq: 1}}})
	var apiErr *Error
	if resp != nil || !errors.As(err, &apiErr) || apiErr.Code != 10041 || apiErr.Endpoint != EndpointRecall {
		t.Errorf("resp = %v, err = %v; want nil and *Error 10041", resp, err)
	}
}
