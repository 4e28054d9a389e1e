package sim

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/usersig"
)

func TestRequestChecks(t *testing.T) {
	t.Parallel()
	f := setup(t, Config{})
	f.group("g1", GroupPublic, 3)
	clear := "/v4/" + string(chatapi.EndpointClear)
	modify := "/v4/" + string(chatapi.EndpointModify)
	set := func(k, v string) func(url.Values) { return func(q url.Values) { q.Set(k, v) } }
	del := func(k string) func(url.Values) { return func(q url.Values) { q.Del(k) } }
	good := `{"GroupId":"g1"}`
	tests := []struct {
		name   string
		method string
		path   string
		mods   []func(url.Values)
		body   string
		code   int
	}{
		{"ok", "POST", clear, nil, good, 0},
		{"not v4", "POST", "/v3/group_open_http_svc/clear_group_msg", nil, good, 60002},
		{"extra segment", "POST", clear + "/x", nil, good, 60002},
		{"unknown service", "POST", "/v4/nosuch_svc/clear_group_msg", nil, good, 60002},
		{"unknown command", "POST", "/v4/group_open_http_svc/no_such_cmd", nil, good, 10003},
		{"not emulated command", "POST", "/v4/group_open_http_svc/create_group", nil, good, 10003},
		{"GET", "GET", clear, nil, good, 60002},
		{"sdkappid missing", "POST", clear, []func(url.Values){del("sdkappid")}, good, 60012},
		{"sdkappid other", "POST", clear, []func(url.Values){set("sdkappid", "1400000002")}, good, 60006},
		{"sdkappid not number", "POST", clear, []func(url.Values){set("sdkappid", "abc")}, good, 60006},
		{"contenttype missing", "POST", clear, []func(url.Values){del("contenttype")}, good, 60002},
		{"contenttype JSON", "POST", clear, []func(url.Values){set("contenttype", "JSON")}, good, 60002},
		{"identifier missing", "POST", clear, []func(url.Values){del("identifier")}, good, 60004},
		{"identifier not admin", "POST", clear, []func(url.Values){set("identifier", "alice")}, good, 60010},
		{"usersig missing", "POST", clear, []func(url.Values){del("usersig")}, good, usersig.CodeEmpty},
		{"usersig garbage", "POST", clear, []func(url.Values){set("usersig", "garbage")}, good, usersig.CodeUnparsable},
		{"usersig other key", "POST", clear, []func(url.Values){set("usersig", genSig(t, testApp, "other", testAdmin))}, good, usersig.CodeSigMismatch},
		{"usersig other identifier", "POST", clear, []func(url.Values){set("usersig", genSig(t, testApp, testKey, "bob"))}, good, usersig.CodeIdentifierMismatch},
		{"usersig other app", "POST", clear, []func(url.Values){set("usersig", genSig(t, testApp+1, testKey, testAdmin))}, good, usersig.CodeSDKAppIDMismatch},
		{"usersig expired", "POST", clear, []func(url.Values){set("usersig", usersig.Sign(usersig.Claims{Identifier: testAdmin, SDKAppID: testApp, Time: 1000, Expire: 60}, testKey))}, good, usersig.CodeExpired},
		{"random missing", "POST", clear, []func(url.Values){del("random")}, good, 60002},
		{"random negative", "POST", clear, []func(url.Values){set("random", "-1")}, good, 60002},
		{"random too big", "POST", clear, []func(url.Values){set("random", "4294967296")}, good, 60002},
		{"random max", "POST", clear, []func(url.Values){set("random", "4294967295")}, good, 0},
		{"empty body", "POST", clear, nil, "", 60003},
		{"body array", "POST", clear, nil, `[]`, 60003},
		{"body not json", "POST", clear, nil, `{"GroupId":`, 60003},
		{"two objects", "POST", clear, nil, `{} {}`, 60003},
		{"modify empty body", "POST", modify, nil, "", 90001},
		{"modify body string", "POST", modify, nil, `"x"`, 90001},
		{"body too large", "POST", clear, nil, `{"GroupId":"g1","x":"` + strings.Repeat("a", MaxBodyBytes) + `"}`, 60003},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := f.raw(tt.method, tt.path, f.query(tt.mods...), tt.body)
			if rec.Code != http.StatusOK {
				t.Fatalf("HTTP %d, want 200", rec.Code)
			}
			var env chatapi.Envelope
			if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil {
				t.Fatalf("answer %q: %v", rec.Body, err)
			}
			if env.ErrorCode != tt.code {
				t.Fatalf("ErrorCode = %d (%s), want %d", env.ErrorCode, env.ErrorInfo, tt.code)
			}
			wantStatus := "OK"
			if tt.code != 0 {
				wantStatus = "FAIL"
			}
			if env.ActionStatus != wantStatus || env.RequestID == "" {
				t.Fatalf("envelope = %+v", env)
			}
			if strings.Contains(rec.Body.String(), testKey) || strings.Contains(rec.Body.String(), f.sig) {
				t.Fatal("answer echoes a secret")
			}
		})
	}
}

func TestAuthFailuresDoNotChangeState(t *testing.T) {
	t.Parallel()
	f := setup(t, Config{})
	f.group("g1", GroupPublic, 2)
	rec := f.raw("POST", "/v4/"+string(chatapi.EndpointRecall), f.query(func(q url.Values) { q.Set("identifier", "alice") }), `{"GroupId":"g1","MsgSeqList":[{"MsgSeq":1}]}`)
	if !strings.Contains(rec.Body.String(), "60010") {
		t.Fatalf("answer %s", rec.Body)
	}
	if f.msg("g1", "", 1).Recalled {
		t.Fatal("a refused call recalled a message")
	}
	st := f.srv.Stats().Endpoints[chatapi.EndpointRecall]
	if st.Calls != 1 || st.Codes[60010] != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestClear(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		typ         GroupType
		body        string
		code        int
		wantCleared uint64 // highest cleared seq of 5
	}{
		{"all", GroupPublic, `{"GroupId":"G"}`, 0, 5},
		{"up to seq", GroupPrivate, `{"GroupId":"G","MsgSeq":3}`, 0, 3},
		{"seq beyond last", GroupChatRoom, `{"GroupId":"G","MsgSeq":99}`, 0, 5},
		{"seq zero", GroupPublic, `{"GroupId":"G","MsgSeq":0}`, 0, 0},
		{"avchatroom", GroupAVChatRoom, `{"GroupId":"G","MsgSeq":2}`, 0, 2},
		{"work alias", GroupWork, `{"GroupId":"G"}`, 0, 5},
		{"meeting alias", GroupMeeting, `{"GroupId":"G"}`, 0, 5},
		{"community", GroupCommunity, `{"GroupId":"G"}`, 10007, 0},
		{"missing group", GroupPublic, `{"GroupId":"other"}`, 10010, 0},
		{"bad group id", GroupPublic, `{"GroupId":"@TGS#bad-id"}`, 10015, 0},
		{"no group id", GroupPublic, `{}`, 10004, 0},
		{"mistyped seq", GroupPublic, `{"GroupId":"G","MsgSeq":"3"}`, 10004, 0},
		{"negative seq", GroupPublic, `{"GroupId":"G","MsgSeq":-1}`, 10004, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := setup(t, Config{})
			id := "G"
			body := tt.body
			if tt.typ == GroupCommunity {
				id = "@TGS#_G"
				body = strings.ReplaceAll(body, `"G"`, `"@TGS#_G"`)
			}
			f.group(id, tt.typ, 5)
			env := f.call(chatapi.EndpointClear, body, nil)
			if env.ErrorCode != tt.code {
				t.Fatalf("ErrorCode = %d (%s), want %d", env.ErrorCode, env.ErrorInfo, tt.code)
			}
			for seq := uint64(1); seq <= 5; seq++ {
				if got, want := f.msg(id, "", seq).Cleared, seq <= tt.wantCleared; got != want {
					t.Fatalf("seq %d cleared = %v, want %v", seq, got, want)
				}
			}
			if got := f.srv.Stats().MessagesCleared; got != int64(tt.wantCleared) {
				t.Fatalf("MessagesCleared = %d, want %d", got, tt.wantCleared)
			}
		})
	}
}

func TestClearWatermarkDoesNotCoverLaterMessages(t *testing.T) {
	t.Parallel()
	f := setup(t, Config{})
	f.group("G", GroupPublic, 2)
	if env := f.call(chatapi.EndpointClear, `{"GroupId":"G","MsgSeq":10}`, nil); env.ErrorCode != 0 {
		t.Fatal(env)
	}
	if env := f.call(chatapi.EndpointClear, `{"GroupId":"G","MsgSeq":1}`, nil); env.ErrorCode != 0 {
		t.Fatal(env)
	}
	f.srv.AddMessages("G", "", 1)
	if !f.msg("G", "", 2).Cleared || f.msg("G", "", 3).Cleared {
		t.Fatal("watermark went down or covered a later message")
	}
}

func TestRecall(t *testing.T) {
	t.Parallel()
	f := setup(t, Config{})
	f.group("G", GroupPublic, 6)
	f.call(chatapi.EndpointClear, `{"GroupId":"G","MsgSeq":1}`, nil)

	var ans chatapi.GroupMsgRecallResponse
	env := f.call(chatapi.EndpointRecall, chatapi.GroupMsgRecallRequest{GroupId: "G", MsgSeqList: seqs(1, 2, 3, 99, 0), Reason: "spam"}, &ans)
	if env.ErrorCode != 0 {
		t.Fatalf("ErrorCode %d", env.ErrorCode)
	}
	want := rets(1, 10030, 2, 0, 3, 0, 99, 10030, 0, 10030)
	if !equalRets(ans.RecallRetList, want) {
		t.Fatalf("RecallRetList = %v, want %v", ans.RecallRetList, want)
	}
	if m := f.msg("G", "", 2); !m.Recalled {
		t.Fatal("seq 2 not recalled")
	}
	if f.msg("G", "", 4).Recalled || f.msg("G", "", 1).Recalled {
		t.Fatal("wrong message recalled")
	}
	// Again: idempotent.
	f.call(chatapi.EndpointRecall, chatapi.GroupMsgRecallRequest{GroupId: "G", MsgSeqList: seqs(2, 4)}, &ans)
	if want := rets(2, 0, 4, 0); !equalRets(ans.RecallRetList, want) {
		t.Fatalf("second RecallRetList = %v, want %v", ans.RecallRetList, want)
	}
	st := f.srv.Stats()
	if st.MessagesRecalled != 3 {
		t.Fatalf("MessagesRecalled = %d, want 3", st.MessagesRecalled)
	}
	if rc := st.Endpoints[chatapi.EndpointRecall].RecallRetCodes; rc[0] != 4 || rc[10030] != 3 {
		t.Fatalf("RecallRetCodes = %v", rc)
	}

	for _, tt := range []struct {
		name string
		body any
		code int
	}{
		{"empty list", chatapi.GroupMsgRecallRequest{GroupId: "G", MsgSeqList: seqs()}, 10004},
		{"no list", `{"GroupId":"G"}`, 10004},
		{"eleven", chatapi.GroupMsgRecallRequest{GroupId: "G", MsgSeqList: seqs(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)}, 10004},
		{"ten", chatapi.GroupMsgRecallRequest{GroupId: "G", MsgSeqList: seqs(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)}, 0},
		{"missing group", chatapi.GroupMsgRecallRequest{GroupId: "H", MsgSeqList: seqs(1)}, 10010},
		{"bad group", chatapi.GroupMsgRecallRequest{GroupId: strings.Repeat("x", 49), MsgSeqList: seqs(1)}, 10015},
		{"topic on public", chatapi.GroupMsgRecallRequest{GroupId: "G", TopicId: "G@TOPIC#_a", MsgSeqList: seqs(1)}, 10004},
		{"list not array", `{"GroupId":"G","MsgSeqList":{"MsgSeq":1}}`, 10004},
	} {
		if env := f.call(chatapi.EndpointRecall, tt.body, nil); env.ErrorCode != tt.code {
			t.Errorf("%s: ErrorCode = %d (%s), want %d", tt.name, env.ErrorCode, env.ErrorInfo, tt.code)
		}
	}
}

// rets builds a RecallRetList from seq, code pairs.
func rets(pairs ...int) []chatapi.RecallRet {
	var out []chatapi.RecallRet
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, chatapi.RecallRet{MsgSeq: uint64(pairs[i]), RetCode: pairs[i+1]})
	}
	return out
}

func equalRets(a, b []chatapi.RecallRet) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRecallAllGroupTypesAndTopics(t *testing.T) {
	t.Parallel()
	f := setup(t, Config{})
	for _, typ := range []GroupType{GroupPrivate, GroupPublic, GroupChatRoom, GroupAVChatRoom} {
		id := "g-" + string(typ)
		f.group(id, typ, 1)
		var ans chatapi.GroupMsgRecallResponse
		if env := f.call(chatapi.EndpointRecall, chatapi.GroupMsgRecallRequest{GroupId: id, MsgSeqList: seqs(1)}, &ans); env.ErrorCode != 0 || ans.RecallRetList[0].RetCode != 0 {
			t.Fatalf("%s: %+v %+v", typ, env, ans)
		}
	}
	const c, topic = "@TGS#_@TGS#cQVLVHIM62CJ", "@TGS#_@TGS#cQVLVHIM62CJ@TOPIC#_TestTopic"
	f.group(c, GroupCommunity, 2)
	if err := f.srv.CreateTopic(c, topic); err != nil {
		t.Fatal(err)
	}
	if first, last, err := f.srv.AddMessages(c, topic, 3); err != nil || first != 1 || last != 3 {
		t.Fatalf("AddMessages(topic) = %d, %d, %v", first, last, err)
	}
	var ans chatapi.GroupMsgRecallResponse
	f.call(chatapi.EndpointRecall, chatapi.GroupMsgRecallRequest{GroupId: c, TopicId: topic, MsgSeqList: seqs(3)}, &ans)
	if ans.RecallRetList[0].RetCode != 0 || !f.msg(c, topic, 3).Recalled || f.msg(c, "", 2).Recalled {
		t.Fatalf("topic recall: %+v", ans)
	}
	for _, tt := range []struct {
		topic string
		code  int
	}{
		{c + "@TOPIC#_missing", 10010},
		{"@TGS#_other@TOPIC#_x", 10004},
		{c + "@TOPIC#", 10004},
	} {
		if env := f.call(chatapi.EndpointRecall, chatapi.GroupMsgRecallRequest{GroupId: c, TopicId: tt.topic, MsgSeqList: seqs(1)}, nil); env.ErrorCode != tt.code {
			t.Errorf("topic %q: ErrorCode %d, want %d", tt.topic, env.ErrorCode, tt.code)
		}
	}
}

func TestModify(t *testing.T) {
	t.Parallel()
	text := `[{"MsgType":"TIMTextElem","MsgContent":{"Text":"edited"}}]`
	tests := []struct {
		name    string
		typ     GroupType
		body    string
		code    int
		info    string
		wantTxt string // expected body text of seq 2 afterwards, "" = unchanged
		wantCCD string
	}{
		{"body", GroupPublic, `{"GroupId":"G","MsgSeq":2,"MsgBody":` + text + `}`, 0, "succeed", "edited", ""},
		{"ccd", GroupPrivate, `{"GroupId":"G","MsgSeq":2,"CloudCustomData":"cc"}`, 0, "succeed", "", "cc"},
		{"both", GroupCommunity, `{"GroupId":"G","MsgSeq":2,"MsgBody":` + text + `,"CloudCustomData":"cc"}`, 0, "succeed", "edited", "cc"},
		{"empty ccd", GroupChatRoom, `{"GroupId":"G","MsgSeq":2,"CloudCustomData":""}`, 0, "succeed", "", ""},
		{"avchatroom", GroupAVChatRoom, `{"GroupId":"G","MsgSeq":2,"CloudCustomData":"cc"}`, 10007, "", "", ""},
		{"neither", GroupPublic, `{"GroupId":"G","MsgSeq":2}`, 20001, "", "", ""},
		{"null body", GroupPublic, `{"GroupId":"G","MsgSeq":2,"MsgBody":null}`, 20001, "", "", ""},
		{"no seq", GroupPublic, `{"GroupId":"G","CloudCustomData":"cc"}`, 20001, "", "", ""},
		{"no group", GroupPublic, `{"MsgSeq":2,"CloudCustomData":"cc"}`, 20001, "", "", ""},
		{"body not array", GroupPublic, `{"GroupId":"G","MsgSeq":2,"MsgBody":{"MsgType":"TIMTextElem"}}`, 90007, "", "", ""},
		{"body empty", GroupPublic, `{"GroupId":"G","MsgSeq":2,"MsgBody":[]}`, 90002, "", "", ""},
		{"bad element", GroupPublic, `{"GroupId":"G","MsgSeq":2,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{}}]}`, 90010, "", "", ""},
		{"unknown element", GroupPublic, `{"GroupId":"G","MsgSeq":2,"MsgBody":[{"MsgType":"TIMNope","MsgContent":{}}]}`, 90010, "", "", ""},
		{"too long", GroupPublic, `{"GroupId":"G","MsgSeq":2,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"` + strings.Repeat("a", 9000) + `"}}]}`, 80002, "", "", ""},
		{"mistyped ccd", GroupPublic, `{"GroupId":"G","MsgSeq":2,"CloudCustomData":5}`, 90001, "", "", ""},
		{"mistyped seq", GroupPublic, `{"GroupId":"G","MsgSeq":"2","CloudCustomData":"cc"}`, 90001, "", "", ""},
		{"missing message", GroupPublic, `{"GroupId":"G","MsgSeq":9,"CloudCustomData":"cc"}`, 10030, "", "", ""},
		{"seq zero", GroupPublic, `{"GroupId":"G","MsgSeq":0,"CloudCustomData":"cc"}`, 10030, "", "", ""},
		{"recalled message", GroupPublic, `{"GroupId":"G","MsgSeq":3,"CloudCustomData":"cc"}`, 10030, "", "", ""},
		{"cleared message", GroupPublic, `{"GroupId":"G","MsgSeq":1,"CloudCustomData":"cc"}`, 10030, "", "", ""},
		{"missing group", GroupPublic, `{"GroupId":"H","MsgSeq":2,"CloudCustomData":"cc"}`, 10010, "", "", ""},
		{"bad group", GroupPublic, `{"GroupId":"@TGS#","MsgSeq":2,"CloudCustomData":"cc"}`, 10015, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := setup(t, Config{})
			id := "G"
			body := tt.body
			if tt.typ == GroupCommunity {
				id = "@TGS#_G"
				body = strings.ReplaceAll(body, `"G"`, `"@TGS#_G"`)
			}
			f.group(id, tt.typ, 3)
			if tt.typ != GroupCommunity {
				f.call(chatapi.EndpointClear, `{"GroupId":"G","MsgSeq":1}`, nil)
			}
			f.call(chatapi.EndpointRecall, chatapi.GroupMsgRecallRequest{GroupId: id, MsgSeqList: seqs(3)}, nil)
			before := f.msg(id, "", 2)
			env := f.call(chatapi.EndpointModify, body, nil)
			if env.ErrorCode != tt.code || (tt.code == 0 && env.ErrorInfo != tt.info) {
				t.Fatalf("answer = %+v, want code %d info %q", env, tt.code, tt.info)
			}
			after := f.msg(id, "", 2)
			if tt.code != 0 {
				if after.Modified != 0 || after.CloudCustomData != before.CloudCustomData || string(after.MsgBody[0].MsgContent) != string(before.MsgBody[0].MsgContent) {
					t.Fatalf("failed modify changed the message: %+v", after)
				}
				return
			}
			if after.Modified != 1 || f.srv.Stats().MessagesModified != 1 {
				t.Fatalf("Modified = %d", after.Modified)
			}
			if after.CloudCustomData != tt.wantCCD {
				t.Fatalf("CloudCustomData = %q, want %q", after.CloudCustomData, tt.wantCCD)
			}
			var content struct{ Text string }
			json.Unmarshal(after.MsgBody[0].MsgContent, &content)
			if tt.wantTxt != "" && content.Text != tt.wantTxt {
				t.Fatalf("text = %q, want %q", content.Text, tt.wantTxt)
			}
			if tt.wantTxt == "" && content.Text != "seed message 2" {
				t.Fatalf("body changed to %q", content.Text)
			}
		})
	}
}

func TestSendAndGetSimple(t *testing.T) {
	t.Parallel()
	clock := newClock()
	f := setup(t, Config{Now: clock.Now})
	f.group("G", GroupPublic, 0)
	for i := 1; i <= 6; i++ {
		var ans chatapi.SendGroupMsgResponse
		env := f.call(chatapi.EndpointSend, chatapi.SendGroupMsgRequest{GroupId: "G", Random: uint32(100 + i),
			MsgBody: []chatapi.MsgElement{{MsgType: "TIMTextElem", MsgContent: json.RawMessage(`{"Text":"hi"}`)}}, CloudCustomData: "c"}, &ans)
		if env.ErrorCode != 0 || ans.MsgSeq != uint64(i) || ans.MsgTime != clock.Now().Unix() {
			t.Fatalf("send %d: %+v %+v", i, env, ans)
		}
	}
	m := f.msg("G", "", 6)
	if m.From != testAdmin || m.Random != 106 || m.CloudCustomData != "c" {
		t.Fatalf("message 6 = %+v", m)
	}
	f.call(chatapi.EndpointRecall, chatapi.GroupMsgRecallRequest{GroupId: "G", MsgSeqList: seqs(5, 1)}, nil)
	f.call(chatapi.EndpointClear, `{"GroupId":"G","MsgSeq":2}`, nil) // 1 is recalled and cleared

	type row struct {
		seq   uint64
		place int
	}
	tests := []struct {
		name     string
		req      chatapi.GroupMsgGetSimpleRequest
		want     []row
		finished int
	}{
		{"newest", chatapi.GroupMsgGetSimpleRequest{GroupId: "G", ReqMsgNumber: 20}, []row{{6, 0}, {4, 0}, {3, 0}, {2, 1}}, 1},
		{"with recalled", chatapi.GroupMsgGetSimpleRequest{GroupId: "G", ReqMsgNumber: 20, WithRecalledMsg: 1}, []row{{6, 0}, {5, 2}, {4, 0}, {3, 0}, {2, 1}, {1, 2}}, 1},
		{"page", chatapi.GroupMsgGetSimpleRequest{GroupId: "G", ReqMsgNumber: 2}, []row{{6, 0}, {4, 0}}, 0},
		{"from seq", chatapi.GroupMsgGetSimpleRequest{GroupId: "G", ReqMsgNumber: 2, ReqMsgSeq: 3}, []row{{3, 0}, {2, 1}}, 1},
		{"from seq with recalled", chatapi.GroupMsgGetSimpleRequest{GroupId: "G", ReqMsgNumber: 2, ReqMsgSeq: 3, WithRecalledMsg: 1}, []row{{3, 0}, {2, 1}}, 0},
		{"beyond newest", chatapi.GroupMsgGetSimpleRequest{GroupId: "G", ReqMsgNumber: 1, ReqMsgSeq: 100}, []row{{6, 0}}, 0},
	}
	for _, tt := range tests {
		var ans chatapi.GroupMsgGetSimpleResponse
		if env := f.call(chatapi.EndpointGetSimple, tt.req, &ans); env.ErrorCode != 0 {
			t.Fatalf("%s: %+v", tt.name, env)
		}
		var got []row
		for _, m := range ans.RspMsgList {
			got = append(got, row{m.MsgSeq, m.IsPlaceMsg})
			if m.IsPlaceMsg == chatapi.PlaceRecalled && len(m.MsgBody) != 0 {
				t.Errorf("%s: recalled message %d has a body", tt.name, m.MsgSeq)
			}
			if m.IsPlaceMsg != chatapi.PlaceRecalled && (len(m.MsgBody) != 1 || m.From_Account != testAdmin) {
				t.Errorf("%s: message %d = %+v", tt.name, m.MsgSeq, m)
			}
		}
		if len(got) != len(tt.want) || ans.IsFinished != tt.finished || ans.GroupId != "G" {
			t.Errorf("%s: got %v finished %d, want %v finished %d", tt.name, got, ans.IsFinished, tt.want, tt.finished)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
				break
			}
		}
	}
	for _, n := range []int{0, 21, -1} {
		if env := f.call(chatapi.EndpointGetSimple, chatapi.GroupMsgGetSimpleRequest{GroupId: "G", ReqMsgNumber: n}, nil); env.ErrorCode != 10004 {
			t.Errorf("ReqMsgNumber %d: ErrorCode %d, want 10004", n, env.ErrorCode)
		}
	}
	// Empty group.
	f.group("E", GroupPublic, 0)
	var ans chatapi.GroupMsgGetSimpleResponse
	f.call(chatapi.EndpointGetSimple, chatapi.GroupMsgGetSimpleRequest{GroupId: "E", ReqMsgNumber: 5}, &ans)
	if ans.IsFinished != 1 || ans.RspMsgList == nil || len(ans.RspMsgList) != 0 {
		t.Fatalf("empty group: %+v", ans)
	}
	// Send refusals.
	for _, tt := range []struct {
		body string
		code int
	}{
		{`{"GroupId":"G"}`, 90002},
		{`{"GroupId":"G","MsgBody":"x"}`, 90007},
		{`{"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"a"}}]}`, 10004},
		{`{"GroupId":"nope","MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"a"}}]}`, 10010},
	} {
		if env := f.call(chatapi.EndpointSend, tt.body, nil); env.ErrorCode != tt.code {
			t.Errorf("send %s: ErrorCode %d, want %d", tt.body, env.ErrorCode, tt.code)
		}
	}
}

func TestAutoCreate(t *testing.T) {
	t.Parallel()
	f := setup(t, Config{AutoCreate: true})
	body := []chatapi.MsgElement{{MsgType: "TIMTextElem", MsgContent: json.RawMessage(`{"Text":"hi"}`)}}
	var ans chatapi.SendGroupMsgResponse
	if env := f.call(chatapi.EndpointSend, chatapi.SendGroupMsgRequest{GroupId: "new", MsgBody: body}, &ans); env.ErrorCode != 0 || ans.MsgSeq != 1 {
		t.Fatalf("send to new group: %+v %+v", env, ans)
	}
	if g, ok := f.srv.Group("new"); !ok || g.Type != GroupPublic {
		t.Fatalf("auto-created group = %+v %v", g, ok)
	}
	const c = "@TGS#_auto"
	f.call(chatapi.EndpointSend, chatapi.SendGroupMsgRequest{GroupId: c, TopicId: c + "@TOPIC#_t", MsgBody: body}, &ans)
	if g, ok := f.srv.Group(c); !ok || g.Type != GroupCommunity || g.Topics[c+"@TOPIC#_t"] != 1 {
		t.Fatalf("auto-created community = %+v %v", g, ok)
	}
	if env := f.call(chatapi.EndpointClear, `{"GroupId":"@TGS#x_y"}`, nil); env.ErrorCode != 10015 {
		t.Fatalf("malformed ID with AutoCreate: %d", env.ErrorCode)
	}
}

func TestCheckGroupID(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		id string
		ok bool
	}{
		{"@TGS#2J4SZEAEL", true},
		{"@TGS#_@TGS#cQVLVHIM62CJ", true},
		{"my-group:1 with space", true},
		{strings.Repeat("a", 48), true},
		{strings.Repeat("a", 49), false},
		{"", false},
		{"@TGS#", false},
		{"@TGS#_", false},
		{"@TGS#abc-def", false},
		{"tab\there", false},
		{"héllo", false},
	} {
		if err := CheckGroupID(tt.id); (err == nil) != tt.ok {
			t.Errorf("CheckGroupID(%q) = %v, want ok=%v", tt.id, err, tt.ok)
		}
	}
}

func TestCreateGroupErrors(t *testing.T) {
	t.Parallel()
	f := setup(t, Config{})
	f.group("a", GroupPublic, 0)
	for _, tt := range []struct {
		id   string
		typ  GroupType
		code int
	}{
		{"a", GroupPublic, CodeBadParam},
		{"@TGS#_x", GroupPublic, CodeBadGroupID},
		{"plain", GroupCommunity, CodeBadGroupID},
		{"b", "Nope", CodeBadParam},
		{"@TGS#!", GroupPublic, CodeBadGroupID},
	} {
		err := f.srv.CreateGroup(tt.id, tt.typ)
		var e *Error
		if !asError(err, &e) || e.Code != tt.code {
			t.Errorf("CreateGroup(%q, %q) = %v, want code %d", tt.id, tt.typ, err, tt.code)
		}
	}
	if err := f.srv.CreateTopic("a", "a@TOPIC#_x"); err == nil {
		t.Error("CreateTopic on a Public group succeeded")
	}
	if _, _, err := f.srv.AddMessages("zz", "", 1); err == nil {
		t.Error("AddMessages to a missing group succeeded")
	}
}

func asError(err error, target **Error) bool {
	e, ok := err.(*Error)
	*target = e
	return ok
}

func TestStatsCountEveryCall(t *testing.T) {
	t.Parallel()
	clock := newClock()
	f := setup(t, Config{Now: clock.Now})
	f.group("G", GroupPublic, 1)
	f.call(chatapi.EndpointClear, `{"GroupId":"G"}`, nil)
	clock.Advance(1500 * time.Millisecond)
	f.call(chatapi.EndpointClear, `{"GroupId":"H"}`, nil)
	f.raw("POST", "/v4/"+string(chatapi.EndpointClear), f.query(func(q url.Values) { q.Del("usersig") }), `{}`)
	f.raw("POST", "/v4/nosuch/x", nil, `{}`)
	st := f.srv.Stats()
	c := st.Endpoints[chatapi.EndpointClear]
	if c.Calls != 3 || c.Codes[0] != 1 || c.Codes[10010] != 1 || c.Codes[70002] != 1 {
		t.Fatalf("clear stats = %+v", c)
	}
	if len(c.PerSecond) != 2 || c.PerSecond[0] != 1 || c.PerSecond[1] != 2 {
		t.Fatalf("PerSecond = %v", c.PerSecond)
	}
	if c.MaxPerSecond != 2 || c.MaxAdmittedPerSecond != 1 {
		t.Fatalf("MaxPerSecond = %d, MaxAdmittedPerSecond = %d", c.MaxPerSecond, c.MaxAdmittedPerSecond)
	}
	if st.OtherCalls != 1 || st.MessagesCleared != 1 {
		t.Fatalf("stats = %+v", st)
	}
	if !st.Start.Equal(clock.Now().Add(-1500 * time.Millisecond)) {
		t.Fatalf("Start = %v", st.Start)
	}
	f.srv.Reset()
	st = f.srv.Stats()
	if st.Endpoints[chatapi.EndpointClear].Calls != 0 || st.OtherCalls != 0 || st.MessagesCleared != 0 {
		t.Fatalf("after Reset: %+v", st)
	}
	if _, ok := f.srv.Group("G"); ok {
		t.Fatal("group survived Reset")
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	for _, cfg := range []Config{
		{SecretKey: "k"},
		{SDKAppID: 1},
		{SDKAppID: 1, SecretKey: "k", Admins: []string{""}},
		{SDKAppID: 1, SecretKey: "k", Window: -time.Second},
		{SDKAppID: 1, SecretKey: "k", Rate: maxRate + 1},
		{SDKAppID: 1, SecretKey: "k", Faults: map[chatapi.Endpoint]Faults{"x/y": {}}},
		{SDKAppID: 1, SecretKey: "k", Faults: map[chatapi.Endpoint]Faults{chatapi.EndpointClear: {HTTP502: 2}}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		} else if strings.Contains(err.Error(), "k\"") {
			t.Errorf("error %q shows the key", err)
		}
	}
}

// TestCachedSigAnswersTheSame checks that a UserSig accepted once is still
// refused for another admin and once it expires.
func TestCachedSigAnswersTheSame(t *testing.T) {
	t.Parallel()
	clock := newClock()
	f := setup(t, Config{Now: clock.Now, Admins: []string{testAdmin, "ops"}})
	f.group("G", GroupPublic, 1)
	body := `{"GroupId":"G","ReqMsgNumber":1}`
	path := "/v4/" + string(chatapi.EndpointGetSimple)
	code := func(mods ...func(url.Values)) int {
		var env chatapi.Envelope
		json.Unmarshal(f.raw("POST", path, f.query(mods...), body).Body.Bytes(), &env)
		return env.ErrorCode
	}
	if c := code(); c != 0 {
		t.Fatalf("first call: %d", c)
	}
	if c := code(); c != 0 {
		t.Fatalf("cached call: %d", c)
	}
	if c := code(func(q url.Values) { q.Set("identifier", "ops") }); c != usersig.CodeIdentifierMismatch {
		t.Fatalf("cached sig for another admin: %d", c)
	}
	// The sig was signed on the real clock, which may have ticked past the
	// fake clock's second since newClock: a minute past the day is past
	// its expiry either way (one second past was not, once in CI).
	clock.Advance(86400*time.Second + time.Minute)
	if c := code(); c != usersig.CodeExpired {
		t.Fatalf("cached sig after expiry: %d", c)
	}
}
