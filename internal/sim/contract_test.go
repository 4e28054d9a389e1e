package sim_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/timq/timq/tasks"

	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/sim"
)

// contract is one class of answer the client must read the way the worker
// expects, produced by the real emulator.
type contract struct {
	name      string
	simNow    func() time.Time
	setup     func(t *testing.T, s *sim.Server)
	client    func(cfg *chatapi.Config)
	call      func(ctx context.Context, c *chatapi.Client) error
	wantCode  int
	wantHTTP  int
	wantClass chatapi.Class
}

func TestClientEmulatorContract(t *testing.T) {
	t.Parallel()
	const app, key = 1400000001, "contract-key"
	modify := func(group string) func(context.Context, *chatapi.Client) error {
		return func(ctx context.Context, c *chatapi.Client) error {
			_, err := c.ModifyGroupMsg(ctx, &chatapi.ModifyGroupMsgRequest{GroupId: group, MsgSeq: 1, MsgBody: tasks.TextBody("x")})
			return err
		}
	}
	clear := func(group string) func(context.Context, *chatapi.Client) error {
		return func(ctx context.Context, c *chatapi.Client) error {
			_, err := c.ClearGroupMsg(ctx, &chatapi.ClearGroupMsgRequest{GroupId: group})
			return err
		}
	}
	recall := func(ctx context.Context, c *chatapi.Client) error {
		_, err := c.GroupMsgRecall(ctx, &chatapi.GroupMsgRecallRequest{GroupId: "g", MsgSeqList: []chatapi.MsgSeqItem{{MsgSeq: 1}}})
		return err
	}
	fault := func(ep chatapi.Endpoint, f sim.Faults) func(*testing.T, *sim.Server) {
		return func(t *testing.T, s *sim.Server) {
			if err := s.SetFaults(ep, f); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []contract{
		{name: "success", call: modify("g"), wantClass: -1},
		{name: "10002 on clear", setup: fault(chatapi.EndpointClear, sim.Faults{Codes: map[int]float64{10002: 1}}), call: clear("g"), wantCode: 10002, wantClass: chatapi.ClassRetry},
		{name: "10002 on recall", setup: fault(chatapi.EndpointRecall, sim.Faults{Codes: map[int]float64{10002: 1}}), call: recall, wantCode: 10002, wantClass: chatapi.ClassRetry},
		{name: "20004 on modify", setup: fault(chatapi.EndpointModify, sim.Faults{Codes: map[int]float64{20004: 1}}), call: modify("g"), wantCode: 20004, wantClass: chatapi.ClassRetry},
		{name: "20005 on modify", setup: fault(chatapi.EndpointModify, sim.Faults{Codes: map[int]float64{20005: 1}}), call: modify("g"), wantCode: 20005, wantClass: chatapi.ClassRetry},
		{name: "91000 on modify", setup: fault(chatapi.EndpointModify, sim.Faults{Codes: map[int]float64{91000: 1}}), call: modify("g"), wantCode: 91000, wantClass: chatapi.ClassRetry},
		{name: "HTTP 502", setup: fault(chatapi.EndpointClear, sim.Faults{HTTP502: 1}), call: clear("g"), wantHTTP: 502, wantClass: chatapi.ClassRetry},
		{name: "hang past the client timeout", setup: fault(chatapi.EndpointClear, sim.Faults{Hang: 1, HangFor: 5 * time.Second}),
			client: func(cfg *chatapi.Config) { cfg.Timeout = 200 * time.Millisecond },
			call:   clear("g"), wantClass: chatapi.ClassRetry},
		{name: "rate limit", setup: func(t *testing.T, s *sim.Server) {}, call: func(ctx context.Context, c *chatapi.Client) error {
			for range 3 { // the emulator in this table allows 3 calls a second per endpoint
				if _, err := c.GroupMsgGetSimple(ctx, &chatapi.GroupMsgGetSimpleRequest{GroupId: "g", ReqMsgNumber: 1}); err != nil {
					return err
				}
			}
			_, err := c.GroupMsgGetSimple(ctx, &chatapi.GroupMsgGetSimpleRequest{GroupId: "g", ReqMsgNumber: 1})
			return err
		}, wantCode: 60007, wantClass: chatapi.ClassThrottle},
		{name: "forged UserSig (other key)", client: func(cfg *chatapi.Config) { cfg.SecretKey = "not-the-key" }, call: clear("g"), wantCode: 70009, wantClass: chatapi.ClassPermanent},
		{name: "UserSig for another app", client: func(cfg *chatapi.Config) { cfg.SDKAppID = app + 1 }, call: clear("g"), wantCode: 60006, wantClass: chatapi.ClassPermanent},
		// The emulator lives two days ahead: the client's 24-hour sig has
		// expired when it arrives, and so has the one it signs again.
		{name: "expired UserSig", simNow: func() time.Time { return time.Now().Add(48 * time.Hour) },
			call: clear("g"), wantCode: 70001, wantClass: chatapi.ClassResign},
		{name: "non-admin identifier", client: func(cfg *chatapi.Config) { cfg.Admin = "alice" }, call: clear("g"), wantCode: 60010, wantClass: chatapi.ClassPermanent},
		{name: "clear on a Community", call: clear("@TGS#_community"), wantCode: 10007, wantClass: chatapi.ClassPermanent},
		{name: "modify on an AVChatRoom", call: modify("av"), wantCode: 10007, wantClass: chatapi.ClassPermanent},
		{name: "missing group", call: clear("nope"), wantCode: 10010, wantClass: chatapi.ClassPermanent},
		{name: "malformed group ID", call: clear("@TGS#not generated!"), wantCode: 10015, wantClass: chatapi.ClassPermanent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := sim.New(sim.Config{SDKAppID: app, SecretKey: key, Rate: 3, Now: tt.simNow})
			if err != nil {
				t.Fatal(err)
			}
			ts := httptest.NewServer(s)
			t.Cleanup(ts.Close)
			t.Cleanup(s.Close)
			for id, typ := range map[string]sim.GroupType{"g": sim.GroupPublic, "av": sim.GroupAVChatRoom, "@TGS#_community": sim.GroupCommunity} {
				if err := s.CreateGroup(id, typ); err != nil {
					t.Fatal(err)
				}
				if _, _, err := s.AddMessages(id, "", 1); err != nil && typ != sim.GroupCommunity {
					t.Fatal(err)
				}
			}
			if tt.setup != nil {
				tt.setup(t, s)
			}
			cfg := chatapi.Config{SDKAppID: app, SecretKey: key, BaseURL: ts.URL}
			if tt.client != nil {
				tt.client(&cfg)
			}
			c, err := chatapi.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			err = tt.call(context.Background(), c)
			if tt.wantClass == -1 {
				if err != nil {
					t.Fatalf("err = %v, want success", err)
				}
				return
			}
			var ae *chatapi.Error
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v (%T), want *chatapi.Error", err, err)
			}
			if ae.Code != tt.wantCode || (tt.wantHTTP != 0 && ae.HTTPStatus != tt.wantHTTP) || chatapi.Classify(err) != tt.wantClass {
				t.Fatalf("got code %d HTTP %d class %v (%v), want code %d HTTP %d class %v",
					ae.Code, ae.HTTPStatus, chatapi.Classify(err), err, tt.wantCode, tt.wantHTTP, tt.wantClass)
			}
		})
	}
}
