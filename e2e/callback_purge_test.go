package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/testenv"
)

// timq api with TIMQ_SDKAPPID takes Tencent's after-send callbacks into the
// message index, and timq purge finds the sender's messages there.
func TestCallbacksFeedPurge(t *testing.T) {
	t.Parallel()
	r := testenv.Redis(t)
	const app, token = 1400000077, "the-callback-token"
	env := testenv.ChildEnv("TIMQ_REDIS_URL="+r.URL(), fmt.Sprintf("TIMQ_SDKAPPID=%d", app), "TIMQ_CALLBACK_TOKEN="+token)
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	a := testenv.Start(t, "api", env, testenv.Binary(t), "api", "--addr", addr, "--log-format", "json")
	a.WaitLine(`"serving the API"`, 30*time.Second)
	post := func(from string, seq uint64) int {
		t.Helper()
		rt := strconv.FormatInt(time.Now().Unix(), 10)
		url := fmt.Sprintf("http://%s/v1/callbacks/tencent?SdkAppid=%d&CallbackCommand=Group.CallbackAfterSendMsg&contenttype=json&ClientIP=127.0.0.1&OptPlatform=RESTAPI&RequestTime=%s&Sign=%s",
			addr, app, rt, chatapi.CallbackSign(token, rt))
		body := fmt.Sprintf(`{"CallbackCommand":"Group.CallbackAfterSendMsg","GroupId":"@TGS#e2e","Type":"Public","From_Account":%q,"MsgSeq":%d,"MsgTime":%d,"Random":5,"MsgBody":[],"EventTime":%d}`,
			from, seq, time.Now().Unix(), time.Now().UnixMilli())
		resp, err := http.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 && !strings.Contains(string(b), `"ActionStatus":"OK"`) {
			t.Fatalf("callback answered %s", b)
		}
		return resp.StatusCode
	}
	for seq := uint64(1); seq <= 3; seq++ {
		if st := post("spammer", seq); st != 200 {
			t.Fatalf("callback %d: %d", seq, st)
		}
	}
	if st := post("alice", 4); st != 200 {
		t.Fatalf("alice's callback: %d", st)
	}
	res := testenv.Run(t, env, nil, time.Minute, testenv.Binary(t), "purge", "--sender", "spammer", "--dry-run")
	if res.Code != 0 || !strings.Contains(res.Stdout, "@TGS#e2e\t3\n") || !strings.Contains(res.Stdout, "3 messages of spammer in 1 groups") {
		t.Fatalf("purge --dry-run: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	if s := strings.Join(append(a.Stdout(), a.Stderr()...), "\n"); strings.Contains(s, token) {
		t.Error("timq api logged the callback token")
	}
}
