package sim_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/timq/timq/tasks"

	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/sim"
)

// TestWithChatapiClient runs the real client against the emulator, pinning
// that both sides agree on the wire format and on what each code means.
func TestWithChatapiClient(t *testing.T) {
	t.Parallel()
	srv, err := sim.New(sim.Config{SDKAppID: 1400000001, SecretKey: "key", Rate: 3})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	t.Cleanup(srv.Close)
	c, err := chatapi.New(chatapi.Config{SDKAppID: 1400000001, SecretKey: "key", BaseURL: ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := srv.CreateGroup("@TGS#2J4SZEAEL", sim.GroupPublic); err != nil {
		t.Fatal(err)
	}
	sent, err := c.SendGroupMsg(ctx, &chatapi.SendGroupMsgRequest{GroupId: "@TGS#2J4SZEAEL", Random: 9, MsgBody: tasks.TextBody("hello")})
	if err != nil || sent.MsgSeq != 1 {
		t.Fatalf("SendGroupMsg = %+v, %v", sent, err)
	}
	ccd := "edited"
	if _, err := c.ModifyGroupMsg(ctx, &chatapi.ModifyGroupMsgRequest{GroupId: "@TGS#2J4SZEAEL", MsgSeq: 1, CloudCustomData: &ccd}); err != nil {
		t.Fatalf("ModifyGroupMsg: %v", err)
	}
	rec, err := c.GroupMsgRecall(ctx, &chatapi.GroupMsgRecallRequest{GroupId: "@TGS#2J4SZEAEL", MsgSeqList: []chatapi.MsgSeqItem{{MsgSeq: 1}, {MsgSeq: 2}}})
	if err != nil || len(rec.RecallRetList) != 2 || rec.RecallRetList[1].RetCode != 10030 {
		t.Fatalf("GroupMsgRecall = %+v, %v", rec, err)
	}
	if m, _ := srv.Message("@TGS#2J4SZEAEL", "", 1); !m.Recalled || m.CloudCustomData != "edited" || m.Modified != 1 {
		t.Fatalf("message = %+v", m)
	}
	// Errors carry the code and the class the worker acts on.
	_, err = c.ClearGroupMsg(ctx, &chatapi.ClearGroupMsgRequest{GroupId: "missing"})
	var ae *chatapi.Error
	if !errors.As(err, &ae) || ae.Code != 10010 || ae.Class() != chatapi.ClassPermanent {
		t.Fatalf("clear missing group: %v", err)
	}
	for i := 0; i < 3; i++ {
		c.ClearGroupMsg(ctx, &chatapi.ClearGroupMsgRequest{GroupId: "@TGS#2J4SZEAEL"})
	}
	_, err = c.ClearGroupMsg(ctx, &chatapi.ClearGroupMsgRequest{GroupId: "@TGS#2J4SZEAEL"})
	if !errors.As(err, &ae) || ae.Code != 60007 || !ae.Throttled() {
		t.Fatalf("over the rate: %v", err)
	}
	srv.SetFaults(chatapi.EndpointGetSimple, sim.Faults{HTTP502: 1})
	_, err = c.GroupMsgGetSimple(ctx, &chatapi.GroupMsgGetSimpleRequest{GroupId: "@TGS#2J4SZEAEL", ReqMsgNumber: 5})
	if !errors.As(err, &ae) || ae.HTTPStatus != 502 || !ae.Retryable() {
		t.Fatalf("502: %v", err)
	}
	srv.SetFaults(chatapi.EndpointGetSimple, sim.Faults{Codes: map[int]float64{10002: 1}})
	_, err = c.GroupMsgGetSimple(ctx, &chatapi.GroupMsgGetSimpleRequest{GroupId: "@TGS#2J4SZEAEL", ReqMsgNumber: 5})
	if !errors.As(err, &ae) || ae.Code != 10002 || !ae.Retryable() {
		t.Fatalf("10002: %v", err)
	}
}
