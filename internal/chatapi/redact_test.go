package chatapi

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestRedactURL(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, want string }{
		{"http://h/v4/x?sdkappid=1&identifier=a&usersig=eJw*abc-_&random=5&contenttype=json",
			"http://h/v4/x?sdkappid=1&identifier=a&usersig=REDACTED&random=5&contenttype=json"},
		{"http://h/v4/x?usersig=abc", "http://h/v4/x?usersig=REDACTED"},
		{"http://h/v4/x?UserSig=abc&usersig=def", "http://h/v4/x?UserSig=REDACTED&usersig=REDACTED"},
		{"http://h/v4/x?user%73ig=abc", "http://h/v4/x?user%73ig=REDACTED"},
		{"http://h/v4/x?usersig=abc#frag", "http://h/v4/x?usersig=REDACTED#frag"},
		{"http://h/v4/x?usersig", "http://h/v4/x?usersig=REDACTED"},
		{"http://h/v4/x?a=usersig", "http://h/v4/x?a=usersig"},
		{"http://h/v4/x", "http://h/v4/x"},
	}
	for _, tc := range cases {
		if got := redactURL(tc.in); got != tc.want {
			t.Errorf("redactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRedactErrKeepsChain(t *testing.T) {
	t.Parallel()
	sc := newScrubber(testKey)
	sig := "eJw*sig-value_"
	inner := errors.New("dial: refused")
	err := sc.redactErr(&url.Error{Op: "Post", URL: "http://h/v4/x?usersig=" + url.QueryEscape(sig), Err: inner}, sig)
	if !errors.Is(err, inner) {
		t.Error("redacted error lost its cause")
	}
	if got, want := err.Error(), `Post "http://h/v4/x?usersig=REDACTED": dial: refused`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}

	// A secret inside the inner error is scrubbed from the message too.
	err = sc.redactErr(errors.New("odd failure near "+sig+" with key "+testKey), sig)
	if got, want := err.Error(), "odd failure near REDACTED with key REDACTED"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if sc.redactErr(nil, sig) != nil {
		t.Error("redactErr(nil) != nil")
	}
}

// An answer that echoes the request URL or the sig (a proxy's error page, an
// ErrorInfo quoting the sig) must not carry it into the error.
func TestAnswersEchoingSecretsAreScrubbed(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		status int
		body   func(r *http.Request) string
	}{
		{"502 page quoting the URL", 502, func(r *http.Request) string {
			return "<html>bad gateway for " + r.URL.String() + "</html>"
		}},
		{"non-JSON 200 quoting the sig", 200, func(r *http.Request) string {
			return "oops " + r.URL.Query().Get("usersig")
		}},
		{"ErrorInfo quoting the sig", 200, func(r *http.Request) string {
			return `{"ActionStatus":"FAIL","ErrorCode":70003,"ErrorInfo":"cannot parse usersig ` +
				r.URL.Query().Get("usersig") + ` with ` + testKey + `"}`
		}},
		{"envelope-less JSON quoting the sig", 200, func(r *http.Request) string {
			return `{"echo":"` + r.URL.Query().Get("usersig") + `"}`
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			api := newFakeAPI(t, func(w http.ResponseWriter, r *http.Request, _ int) { reply(w, tc.status, tc.body(r)) })
			c := newTestClient(t, api.srv.URL)
			sigs := recordSigs(c)
			_, err := c.ClearGroupMsg(t.Context(), &ClearGroupMsgRequest{GroupId: "g"})
			assertErrNoSecrets(t, err, sigs.all()...)
			if !strings.Contains(err.Error(), "REDACTED") {
				t.Errorf("Error() = %q, want the secret replaced by REDACTED", err)
			}
		})
	}
}

func TestSnippet(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, want string }{
		{"", `""`},
		{"<html>", `"<html>"`},
		{"a\nb", `"a\nb"`},
		{strings.Repeat("z", snippetLen), `"` + strings.Repeat("z", snippetLen) + `"`},
		{strings.Repeat("z", snippetLen+1), `"` + strings.Repeat("z", snippetLen) + `"...`},
		{"\xff\xfe", `"` + "\uFFFD" + `"`},
	}
	for _, tc := range cases {
		if got := snippet([]byte(tc.in)); got != tc.want {
			t.Errorf("snippet(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// An answer may echo the request line in any spelling a URL allows: escapes
// in either case (some gateways lower-case them), decoded, or partly escaped.
// None of them may carry the sig or the key out.
func TestScrubberMatchesEverySpelling(t *testing.T) {
	t.Parallel()
	sc := newScrubber(testKey)
	sig := "eJw*ab/c+d=e_f-"
	upper := url.QueryEscape(sig)
	lower := strings.ToLower(upper[:0]) // built below so that only escapes change case
	for i := 0; i < len(upper); i++ {
		if upper[i] == '%' {
			lower += "%" + strings.ToLower(upper[i+1:i+3])
			i += 2
			continue
		}
		lower += upper[i : i+1]
	}
	partly := strings.Replace(upper, "%2A", "*", 1)
	forms := map[string]string{
		"raw":              sig,
		"upper escapes":    upper,
		"lower escapes":    lower,
		"partly escaped":   partly,
		"key":              testKey,
		"key lower-escape": strings.ToLower(url.QueryEscape(testKey)),
	}
	for name, form := range forms {
		for _, line := range []string{
			"POST /v4/group_open_http_svc/clear_group_msg?sdkappid=1&identifier=admin&usersig=" + form + "&random=7 HTTP/1.1",
			"cannot parse " + form + " here",
			`{"echo":"` + form + `"}`,
		} {
			got := sc(line, sig)
			for _, secret := range []string{sig, upper, lower, partly, testKey} {
				if strings.Contains(got, secret) {
					t.Errorf("%s: scrub(%q) = %q still holds %q", name, line, got, secret)
				}
			}
			if !strings.Contains(got, "REDACTED") {
				t.Errorf("%s: scrub(%q) = %q, want REDACTED in it", name, line, got)
			}
		}
	}
}

// A usersig parameter is redacted even when its value is not one the client
// knows (a sig signed by another process, or mangled past recognition).
func TestScrubberRedactsAnyUsersigParameter(t *testing.T) {
	t.Parallel()
	sc := newScrubber(testKey)
	cases := map[string]string{
		"GET /x?usersig=unknown-sig&a=1":       "GET /x?usersig=REDACTED&a=1",
		"GET /x?UserSig=zz%2aq HTTP/1.1":       "GET /x?UserSig=REDACTED HTTP/1.1",
		"see usersig%3Dleaked&b=2":             "see usersig%3DREDACTED&b=2",
		`{"url":"http://h/?usersig=abc"}`:      `{"url":"http://h/?usersig=REDACTED"}`,
		"no parameter here, only the word sig": "no parameter here, only the word sig",
	}
	for in, want := range cases {
		if got := sc(in); got != want {
			t.Errorf("scrub(%q) = %q, want %q", in, got, want)
		}
	}
}

// Through the client: an answer echoing the request line with lower-case
// escapes leaves no sig in the error (and so none in logs or dead letters,
// which quote the error).
func TestAnswerEchoingLowerCaseEscapesIsScrubbed(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		line := r.Method + " " + r.URL.RequestURI()
		lowered := regexpLowerEscapes(line)
		sig := r.URL.Query().Get("usersig")
		reply(w, 200, `{"ActionStatus":"FAIL","ErrorCode":70001,"ErrorInfo":"bad request `+
			lowered+` sig `+regexpLowerEscapes(url.QueryEscape(sig))+`"}`)
	})
	c := newTestClient(t, api.srv.URL)
	sigs := recordSigs(c)
	_, err := c.ClearGroupMsg(t.Context(), &ClearGroupMsgRequest{GroupId: "g"})
	if err == nil {
		t.Fatal("want an error")
	}
	for _, s := range sigs.all() {
		low := regexpLowerEscapes(url.QueryEscape(s))
		if strings.Contains(err.Error(), s) || strings.Contains(err.Error(), low) || strings.Contains(err.Error(), url.QueryEscape(s)) {
			t.Errorf("error %q holds the sig", err)
		}
	}
}

// regexpLowerEscapes lower-cases the hex digits of every percent escape.
func regexpLowerEscapes(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			b.WriteString("%" + strings.ToLower(s[i+1:i+3]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
