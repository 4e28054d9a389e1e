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
