package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/timq/timq/internal/testenv"
)

// `timq api` serves, beside /v1/, what a load balancer and Prometheus ask
// for: /healthz while the process serves, /readyz while its Redis answers,
// /metrics with the API's own series; none of them needs a token.
func TestAPIServesHealthReadinessAndMetrics(t *testing.T) {
	t.Parallel()
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	start := func(redisURL string) string {
		addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		env := testenv.ChildEnv("TIMQ_REDIS_URL="+redisURL, "TIMQ_API_TOKEN=ops-test-token-0123456789")
		a := testenv.Start(t, "api", env, testenv.Binary(t), "api", "--addr", addr, "--log-format", "json")
		a.WaitLine(`"serving the API"`, 30*time.Second)
		return "http://" + addr
	}

	base := start(testenv.Redis(t).URL())
	if code, body := get(base + "/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz = %d %q, want 200 ok", code, body)
	}
	if code, body := get(base + "/readyz"); code != 200 || strings.TrimSpace(body) != "ready" {
		t.Errorf("/readyz with Redis up = %d %q, want 200 ready", code, body)
	}
	if code, _ := get(base + "/v1/dead-letters"); code != 401 {
		t.Errorf("/v1/dead-letters without a token = %d, want 401: the API keeps its tokens", code)
	}
	if code, body := get(base + "/metrics"); code != 200 || !strings.Contains(body, `timq_api_requests_total{route="GET /v1/dead-letters",status="401"} 1`) {
		t.Errorf("/metrics = %d, want 200 with the refused request counted:\n%.2000s", code, body)
	}

	// Nothing listens on this Redis: the process serves, it is not ready.
	down := start(fmt.Sprintf("redis://127.0.0.1:%d/0", testenv.FreePort(t)))
	if code, _ := get(down + "/healthz"); code != 200 {
		t.Errorf("/healthz with Redis down = %d, want 200", code)
	}
	if code, body := get(down + "/readyz"); code != 503 || !strings.Contains(body, "not ready") {
		t.Errorf("/readyz with Redis down = %d %q, want 503 not ready", code, body)
	}
}
