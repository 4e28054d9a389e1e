package dashboard_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/timq/timq/internal/dashboard"
	"github.com/timq/timq/internal/jobs"
	"github.com/timq/timq/internal/testenv"
	"github.com/timq/timq/tasks"
)

// chromiumPath is where Debian's chromium package installs the browser
// (.ci/install-test-tools.sh installs it).
const chromiumPath = "/usr/bin/chromium"

// screenshotDir is where the browser test saves its screenshots: the
// directory in TIMQ_DASH_SCREENSHOT_DIR, or the test's temporary directory.
func screenshotDir(t *testing.T) string {
	if dir := os.Getenv("TIMQ_DASH_SCREENSHOT_DIR"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	return t.TempDir()
}

// needChromium skips the test when Chromium is missing, except on CI
// (CI=true), where a missing browser is a broken setup and fails.
func needChromium(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is missing on CI: the setup must run .ci/install-test-tools.sh", chromiumPath)
	}
	t.Skipf("%s is missing: run .ci/install-test-tools.sh (apt-get install chromium) to run the browser test", chromiumPath)
}

// browser starts a headless Chromium with a fresh profile and returns a tab.
func browser(t *testing.T) context.Context {
	t.Helper()
	profile, err := os.MkdirTemp("", "timq-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Chromium's helpers may still write for a moment after it exits.
		for range 50 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1440, 1000),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelTab(); cancelAlloc() })
	return ctx
}

// answerAuthPrompts answers the browser's basic-auth prompts the way a
// person would: with the credentials in the returned pointer once set, by
// dismissing the prompt while it is nil. Every other request goes on
// untouched.
func answerAuthPrompts(t *testing.T, ctx context.Context) *atomic.Pointer[[2]string] {
	t.Helper()
	var creds atomic.Pointer[[2]string]
	paused := chromedp.Events(ctx, fetch.RequestPaused)
	prompts := chromedp.Events(ctx, fetch.AuthRequired)
	go func() {
		for ev, err := range paused {
			if err != nil {
				return
			}
			_, _ = chromedp.Call(ctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: ev.RequestID})
		}
	}()
	go func() {
		for ev, err := range prompts {
			if err != nil {
				return
			}
			answer := &fetch.AuthChallengeResponse{Response: fetch.AuthChallengeResponseResponseCancelAuth}
			if c := creds.Load(); c != nil {
				answer = &fetch.AuthChallengeResponse{Response: fetch.AuthChallengeResponseResponseProvideCredentials, Username: c[0], Password: c[1]}
			}
			_, _ = chromedp.Call(ctx, fetch.ContinueWithAuth, fetch.ContinueWithAuthParams{RequestID: ev.RequestID, AuthChallengeResponse: answer})
		}
	}()
	handle := true
	if _, err := chromedp.Call(ctx, fetch.Enable, fetch.EnableParams{HandleAuthRequests: &handle}); err != nil {
		t.Fatal(err)
	}
	return &creds
}

// waitText waits until the page's text contains every one of want. It reads
// the text afresh each time, so a navigation in between (a link or a form
// the test clicked) only means another read.
func waitText(t *testing.T, ctx context.Context, what string, want ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		if err == nil && containsAll(text, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: page never showed %q (last error: %v)\npage text:\n%s", what, want, err, text)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(buf))
}

// TestDashboardInChromium drives the dashboard in headless Chromium: it is
// refused without credentials, logs in with basic auth, sees timq's queues,
// the archived task of a failed operation with its readable summary, and
// the dead-letter page, and saves a screenshot of each.
func TestDashboardInChromium(t *testing.T) {
	needChromium(t)
	t.Parallel()
	e := runHistory(t)
	user, pass := "operator", "pw-"+e.emu.SecretKey[len(e.emu.SecretKey)-8:]
	base := serve(t, e.redis, "/", dashboard.Auth{User: user, Password: pass}, false)
	dir := screenshotDir(t)
	ctx := browser(t)

	// Without credentials: the browser's prompt is dismissed, and the
	// answer is 401 with nothing of the dashboard.
	login := answerAuthPrompts(t, ctx)
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(base+"/"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 401 {
		t.Fatalf("dashboard without credentials: HTTP %d, want 401", resp.Status)
	}
	if text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`)); strings.Contains(text, tasks.QueueClear) {
		t.Fatalf("the refused page shows queue names: %q", text)
	}

	// Log in, as a person types the credentials into the browser's prompt:
	// the browser then sends them with every request, the dashboard's own
	// API calls included.
	login.Store(&[2]string{user, pass})
	resp, err = chromedp.Run(ctx, chromedp.NavigateResponse(base+"/"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 200 {
		t.Fatalf("dashboard with credentials: HTTP %d, want 200", resp.Status)
	}
	waitText(t, ctx, "queues page", tasks.QueueClear, tasks.QueueRecall, tasks.QueueModify)
	screenshot(t, ctx, dir, "dashboard-queues.png")

	// The archived clear of a missing group, with its summary and its code.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/queues/"+tasks.QueueClear+"?status=archived")); err != nil {
		t.Fatal(err)
	}
	// The list shows the first 8 characters of task IDs.
	waitText(t, ctx, "archived tasks", e.missing[:8], "clear @TGS#MISSING all messages", "ErrorCode 10010")
	screenshot(t, ctx, dir, "dashboard-archived.png")

	// The task's own page shows the error with the API's code.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/queues/"+tasks.QueueClear+"/tasks/"+e.missing)); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "archived task details", e.missing, "10010")
	screenshot(t, ctx, dir, "dashboard-task.png")

	// The dead-letter store, next to the dashboard.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/dlq/")); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "dead-letter page", "Dead letters", e.missing, "clear @TGS#MISSING all messages", "timq dlq requeue")
	screenshot(t, ctx, dir, "dashboard-dlq.png")
}

// TestJobsPagesInChromium drives the jobs pages in headless Chromium: the
// list shows a job's progress, its page pauses, resumes and (after the
// browser's confirmation) cancels it, each checked in Redis.
func TestJobsPagesInChromium(t *testing.T) {
	needChromium(t)
	t.Parallel()
	r := testenv.Redis(t)
	store := jobs.NewStore(r.Client(t), 0)
	id := seedJob(t, r, "browser cleanup", 12)
	user, pass := "operator", "jobs-pw"
	base := serve(t, r, "/", dashboard.Auth{User: user, Password: pass}, false)
	dir := screenshotDir(t)
	ctx := browser(t)
	answerAuthPrompts(t, ctx).Store(&[2]string{user, pass})

	var dialogs atomic.Int32
	go func() {
		for ev, err := range chromedp.Events(ctx, cdppage.JavascriptDialogOpening) {
			if err != nil {
				return
			}
			if strings.Contains(ev.Message, "Cancel this job?") {
				dialogs.Add(1)
			}
			_, _ = chromedp.Call(ctx, cdppage.HandleJavaScriptDialog, cdppage.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	state := func(want string) {
		t.Helper()
		testenv.WaitFor(t, 10*time.Second, "job "+want+" in Redis", func() bool {
			j, err := store.Get(context.Background(), id)
			return err == nil && j.State == want
		})
	}

	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/jobs/")); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "jobs page", "Jobs", id, "browser cleanup", "queued", "0.0%")
	screenshot(t, ctx, dir, "dashboard-jobs.png")

	if err := chromedp.Do(ctx, chromedp.Click(`a[href$="/jobs/`+id+`"]`)); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "job page", "Job "+id, "Failures", "No failures.")
	if err := chromedp.Do(ctx, chromedp.Click("#pause")); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "paused job page", "pause: done", "paused")
	state(jobs.StatePaused)
	if err := chromedp.Do(ctx, chromedp.Click("#resume")); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "resumed job page", "resume: done", "running")
	state(jobs.StateRunning)
	if err := chromedp.Do(ctx, chromedp.Click("#cancel")); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "cancelled job page", "cancel: done", "cancelled", "100.0%")
	state(jobs.StateCancelled)
	if n := dialogs.Load(); n != 1 {
		t.Fatalf("%d confirmations asked before cancelling, want 1", n)
	}
	if j, _ := store.Get(context.Background(), id); j.Counts.Cancelled != 12 {
		t.Fatalf("cancelled job counts %+v, want 12 cancelled", j.Counts)
	}
	screenshot(t, ctx, dir, "dashboard-job.png")
}
