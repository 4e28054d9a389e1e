package sim

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/timq/timq/internal/chatapi"
)

type received struct {
	query url.Values
	body  map[string]any
}

func TestStoredMessagesAreCalledBackSigned(t *testing.T) {
	var mu sync.Mutex
	var got []received
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		mu.Lock()
		got = append(got, received{r.URL.Query(), m})
		mu.Unlock()
		_, _ = w.Write([]byte(`{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}`))
	}))
	t.Cleanup(rcv.Close)
	f := setup(t, Config{Callbacks: &Callbacks{URL: rcv.URL + "/cb?app=x", Token: "tok"}})
	if err := f.srv.CreateGroup("G", GroupPublic); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.srv.AddMessages("G", "", 2); err != nil {
		t.Fatal(err)
	}
	if env := f.call(chatapi.EndpointSend, `{"GroupId":"G","From_Account":"spammer","Random":9,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"buy"}}]}`, nil); env.ErrorCode != 0 {
		t.Fatalf("send_group_msg: %+v", env)
	}
	deadline := time.Now().Add(10 * time.Second)
	for f.srv.CallbackStats().OK < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if st := f.srv.CallbackStats(); len(got) != 3 || st != (CallbackStats{Sent: 3, OK: 3}) {
		t.Fatalf("%d callbacks received, stats %+v; want 3 (two seeded, one sent)", len(got), st)
	}
	// Posted concurrently: compare in seq order.
	sort.Slice(got, func(i, j int) bool { return got[i].body["MsgSeq"].(float64) < got[j].body["MsgSeq"].(float64) })
	for i, c := range got {
		rt := c.query.Get("RequestTime")
		sum := sha256.Sum256([]byte("tok" + rt))
		if c.query.Get("Sign") != hex.EncodeToString(sum[:]) || c.query.Get("SdkAppid") != strconv.Itoa(testApp) || c.query.Get("app") != "x" {
			t.Errorf("callback %d query %v: not signed with the token, or the URL's own query lost", i, c.query)
		}
		if c.body["CallbackCommand"] != "Group.CallbackAfterSendMsg" || c.body["GroupId"] != "G" || c.body["MsgSeq"] != float64(i+1) {
			t.Errorf("callback %d body %v", i, c.body)
		}
	}
	if got[2].body["From_Account"] != "spammer" || got[2].body["Random"] != float64(9) {
		t.Errorf("the sent message's callback %v", got[2].body)
	}
}

// A slow or failing receiver costs the emulator nothing: its calls answer
// as before, and the callbacks are counted failed.
func TestSlowOrFailingReceiverIsCountedNotWaitedFor(t *testing.T) {
	release := make(chan struct{})
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("slow") == "1" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		http.Error(w, "down", http.StatusInternalServerError)
	}))
	t.Cleanup(func() { close(release); rcv.Close() })
	for _, tc := range []struct{ name, url string }{{"slow", rcv.URL + "/?slow=1"}, {"failing", rcv.URL + "/"}} {
		t.Run(tc.name, func(t *testing.T) {
			f := setup(t, Config{Callbacks: &Callbacks{URL: tc.url, Timeout: 50 * time.Millisecond}})
			if err := f.srv.CreateGroup("G", GroupPublic); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			for range 3 {
				if env := f.call(chatapi.EndpointSend, sendBody, nil); env.ErrorCode != 0 {
					t.Fatalf("send_group_msg with a %s receiver: %+v", tc.name, env)
				}
			}
			if took := time.Since(start); took > time.Second {
				t.Errorf("three sends took %v with a %s receiver: the emulator waited for it", took, tc.name)
			}
			deadline := time.Now().Add(10 * time.Second)
			for f.srv.CallbackStats().Failed < 3 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if st := f.srv.CallbackStats(); st != (CallbackStats{Sent: 3, Failed: 3}) {
				t.Errorf("stats with a %s receiver: %+v, want 3 sent and 3 failed", tc.name, st)
			}
		})
	}
}
