package sim

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/timq/timq/internal/chatapi"
)

func TestAdminAPI(t *testing.T) {
	t.Parallel()
	f := setup(t, Config{})
	do := func(method, path, body string, wantStatus int, out any) string {
		t.Helper()
		rec := f.raw(method, path, nil, body)
		if rec.Code != wantStatus {
			t.Fatalf("%s %s: HTTP %d, want %d: %s", method, path, rec.Code, wantStatus, rec.Body)
		}
		if out != nil {
			if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
		}
		if strings.Contains(rec.Body.String(), testKey) {
			t.Fatalf("%s %s serves the secret key", method, path)
		}
		return rec.Body.String()
	}
	const c = "@TGS#_c1"
	var info GroupInfo
	do("POST", "/_sim/groups", `{"GroupId":"`+c+`","Type":"Community","Messages":3,"Topics":["`+c+`@TOPIC#_a",{"TopicId":"`+c+`@TOPIC#_b","Messages":2}]}`, http.StatusCreated, &info)
	if info.MaxSeq != 3 || info.Type != GroupCommunity || len(info.Topics) != 2 || info.Topics[c+"@TOPIC#_b"] != 2 {
		t.Fatalf("created %+v", info)
	}
	do("POST", "/_sim/groups", `{"GroupId":"w","Type":"Work","Messages":1}`, http.StatusCreated, &info)
	if info.Type != GroupPrivate {
		t.Fatalf("Work created as %s", info.Type)
	}
	do("POST", "/_sim/groups", `{"GroupId":"w","Type":"Public"}`, http.StatusBadRequest, nil)
	do("POST", "/_sim/groups", `{"GroupId":"x","Type":"Public","Bogus":1}`, http.StatusBadRequest, nil)

	var m MessageState
	do("GET", "/_sim/groups/"+url.PathEscape(c)+"/messages/2", "", http.StatusOK, &m)
	if m.MsgSeq != 2 || m.GroupID != c || m.Recalled {
		t.Fatalf("message = %+v", m)
	}
	do("GET", "/_sim/groups/"+url.PathEscape(c)+"/messages/2?topic="+url.QueryEscape(c+"@TOPIC#_b"), "", http.StatusOK, &m)
	if m.TopicID != c+"@TOPIC#_b" {
		t.Fatalf("topic message = %+v", m)
	}
	do("GET", "/_sim/groups/"+url.PathEscape(c)+"/messages/9", "", http.StatusNotFound, nil)
	do("GET", "/_sim/groups/"+url.PathEscape(c)+"/messages/x", "", http.StatusBadRequest, nil)
	do("GET", "/_sim/groups/nope", "", http.StatusNotFound, nil)

	var fl Faults
	do("PUT", "/_sim/faults/clear_group_msg", `{"Codes":{"10002":0.5},"Latency":"40ms","Jitter":20,"HangFor":"2s"}`, http.StatusOK, &fl)
	if got := f.srv.FaultsOf(chatapi.EndpointClear); got.Codes[10002] != 0.5 || got.Latency != 40*time.Millisecond || got.Jitter != 20*time.Millisecond || got.HangFor != 2*time.Second {
		t.Fatalf("faults = %+v", got)
	}
	do("PUT", "/_sim/faults/all", `{"HTTP502":0.1}`, http.StatusOK, nil)
	if got := f.srv.FaultsOf(chatapi.EndpointModify); got.HTTP502 != 0.1 {
		t.Fatalf("all: faults = %+v", got)
	}
	do("PUT", "/_sim/faults/nope", `{}`, http.StatusNotFound, nil)
	do("PUT", "/_sim/faults/all", `{"HTTP502":2}`, http.StatusBadRequest, nil)
	do("PUT", "/_sim/faults/all", `{"Latency":"soon"}`, http.StatusBadRequest, nil)
	var all map[string]Faults
	if body := do("GET", "/_sim/faults", "", http.StatusOK, &all); !strings.Contains(body, `"1s"`) && all["clear_group_msg"].HTTP502 != 0.1 {
		t.Fatalf("faults = %s", body)
	}

	f.call(chatapi.EndpointGetSimple, `{"GroupId":"w","ReqMsgNumber":1}`, nil)
	var st Stats
	do("GET", "/_sim/stats", "", http.StatusOK, &st)
	if st.Endpoints[chatapi.EndpointGetSimple].Calls != 1 {
		t.Fatalf("stats = %+v", st)
	}
	do("POST", "/_sim/reset", "", http.StatusOK, nil)
	do("GET", "/_sim/groups/w", "", http.StatusNotFound, nil)
	do("GET", "/_sim/nothing", "", http.StatusNotFound, nil)
	do("DELETE", "/_sim/stats", "", http.StatusNotFound, nil)
}

func TestFaultsJSON(t *testing.T) {
	t.Parallel()
	in := Faults{Codes: map[int]float64{10002: 0.1}, HTTP502: 0.05, Hang: 0.02, HangFor: 20 * time.Second, Latency: 40 * time.Millisecond, Jitter: 1500 * time.Microsecond}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"Latency":"40ms"`) {
		t.Fatalf("JSON = %s", b)
	}
	var out Faults
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if out.Codes[10002] != 0.1 || out.HTTP502 != in.HTTP502 || out.Hang != in.Hang || out.HangFor != in.HangFor || out.Latency != in.Latency || out.Jitter != in.Jitter {
		t.Fatalf("round trip: %+v", out)
	}
}

func TestSeedFile(t *testing.T) {
	t.Parallel()
	sf, err := ReadSeedFile(strings.NewReader(`{"groups":[
		{"GroupId":"@TGS#2J4SZEAEL","Type":"Public","Messages":4},
		{"GroupId":"@TGS#_c","Type":"community","Topics":["@TGS#_c@TOPIC#_x",{"TopicId":"@TGS#_c@TOPIC#_y","Messages":2}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	f := setup(t, Config{})
	if err := f.srv.Seed(sf); err != nil {
		t.Fatal(err)
	}
	if g, _ := f.srv.Group("@TGS#2J4SZEAEL"); g.MaxSeq != 4 {
		t.Fatalf("group = %+v", g)
	}
	if f.msg("@TGS#_c", "@TGS#_c@TOPIC#_y", 2).MsgSeq != 2 {
		t.Fatal("topic message missing")
	}
	for _, bad := range []string{
		`{"groups":[{"GroupId":"a","Type":"Public","Extra":1}]}`,
		`{"groups":[{"GroupId":"a","Type":"Public"}]} x`,
		`[]`,
	} {
		if _, err := ReadSeedFile(strings.NewReader(bad)); err == nil {
			t.Errorf("ReadSeedFile(%s) succeeded", bad)
		}
	}
	for _, bad := range []SeedFile{
		{Groups: []SeedGroup{{GroupID: "b", Type: "Nope"}}},
		{Groups: []SeedGroup{{GroupID: "c", Type: GroupPublic, Messages: -1}}},
		{Groups: []SeedGroup{{GroupID: "@TGS#_d", Type: GroupCommunity, Topics: []SeedTopic{{TopicID: "@TGS#_e@TOPIC#_x"}}}}},
	} {
		if err := f.srv.Seed(bad); err == nil {
			t.Errorf("Seed(%+v) succeeded", bad)
		}
	}
}

func TestParseGroupSpec(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		spec string
		want SeedGroup
		ok   bool
	}{
		{"g1:Public", SeedGroup{GroupID: "g1", Type: GroupPublic}, true},
		{"g1:public:10", SeedGroup{GroupID: "g1", Type: GroupPublic, Messages: 10}, true},
		{"@TGS#_c:Community:3", SeedGroup{GroupID: "@TGS#_c", Type: GroupCommunity, Messages: 3}, true},
		{"a:b:Work:2", SeedGroup{GroupID: "a:b", Type: GroupPrivate, Messages: 2}, true},
		{"a:b:Meeting", SeedGroup{GroupID: "a:b", Type: GroupChatRoom}, true},
		{"g1", SeedGroup{}, false},
		{"g1:Nope:3", SeedGroup{}, false},
		{":Public", SeedGroup{}, false},
		{"g1:Public:-3", SeedGroup{}, false},
		{"@TGS#bad!:Public", SeedGroup{}, false},
	} {
		got, err := ParseGroupSpec(tt.spec)
		if (err == nil) != tt.ok || (tt.ok && (got.GroupID != tt.want.GroupID || got.Type != tt.want.Type || got.Messages != tt.want.Messages)) {
			t.Errorf("ParseGroupSpec(%q) = %+v, %v; want %+v ok=%v", tt.spec, got, err, tt.want, tt.ok)
		}
	}
}

func TestParseFaultSpec(t *testing.T) {
	t.Parallel()
	fs, err := ParseFaultSpec("clear_group_msg:code=10002:0.1,502:0.05,hang:0.02,latency:40ms,jitter:20,hang-for:20s,20005:0.01")
	if err != nil {
		t.Fatal(err)
	}
	if len(fs.Endpoints) != 1 || fs.Endpoints[0] != chatapi.EndpointClear {
		t.Fatalf("endpoints = %v", fs.Endpoints)
	}
	got := fs.Apply(Faults{})
	want := Faults{Codes: map[int]float64{10002: 0.1, 20005: 0.01}, HTTP502: 0.05, Hang: 0.02, Latency: 40 * time.Millisecond, Jitter: 20 * time.Millisecond, HangFor: 20 * time.Second}
	if got.Codes[10002] != 0.1 || got.Codes[20005] != 0.01 || got.HTTP502 != want.HTTP502 || got.Hang != want.Hang || got.Latency != want.Latency || got.Jitter != want.Jitter || got.HangFor != want.HangFor {
		t.Fatalf("Apply = %+v, want %+v", got, want)
	}
	all, err := ParseFaultSpec("all:latency:5ms")
	if err != nil || len(all.Endpoints) != len(chatapi.Endpoints) {
		t.Fatalf("all: %+v %v", all, err)
	}
	merged := all.Apply(got)
	if merged.Latency != 5*time.Millisecond || merged.Codes[10002] != 0.1 {
		t.Fatalf("merge = %+v", merged)
	}
	if got.Latency != 40*time.Millisecond {
		t.Fatal("Apply changed its argument")
	}
	for _, bad := range []string{
		"", "clear_group_msg", "clear_group_msg:", "nope:502:0.1", "clear_group_msg:502", "clear_group_msg:502:1.5",
		"clear_group_msg:hang:x", "clear_group_msg:latency:soon", "clear_group_msg:latency:-5ms", "clear_group_msg:frob:1",
		"clear_group_msg:0:0.1", "clear_group_msg:502:0.6,hang:0.6",
	} {
		if _, err := ParseFaultSpec(bad); err == nil {
			t.Errorf("ParseFaultSpec(%q) succeeded", bad)
		}
	}
}

func FuzzServeHTTP(f *testing.F) {
	srv, err := New(Config{SDKAppID: testApp, SecretKey: testKey, AutoCreate: true})
	if err != nil {
		f.Fatal(err)
	}
	fx := &fixture{srv: srv, sig: genSig(f, testApp, testKey, testAdmin)}
	good := fx.query().Encode()
	for i, ep := range chatapi.Endpoints {
		f.Add(uint8(i), true, "", `{"GroupId":"G","MsgSeq":1,"MsgSeqList":[{"MsgSeq":1}],"ReqMsgNumber":5,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"x"}}]}`)
		f.Add(uint8(i), true, "", `{"GroupId":"@TGS#_c","TopicId":"@TGS#_c@TOPIC#_t","CloudCustomData":"x","MsgSeq":18446744073709551615}`)
		f.Add(uint8(i), false, "sdkappid=1&usersig=eJyrVg__", `{}`)
		_ = ep
	}
	f.Add(uint8(200), false, "%zz", "[")
	f.Fuzz(func(t *testing.T, epIndex uint8, auth bool, query, body string) {
		path := "/v4/x/y"
		if int(epIndex) < len(chatapi.Endpoints) {
			path = "/v4/" + string(chatapi.Endpoints[epIndex])
		} else if epIndex%2 == 0 {
			path = "/_sim/stats"
		}
		if auth {
			query = good
		}
		req, err := http.NewRequest("POST", "http://sim"+path, strings.NewReader(body))
		if err != nil {
			return
		}
		req.URL.RawQuery = query
		rec := newRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code == http.StatusOK && strings.HasPrefix(path, "/v4/") {
			var env chatapi.Envelope
			if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil || env.ActionStatus == "" {
				t.Fatalf("answer is not the envelope: %q", rec.Body)
			}
		}
	})
}
