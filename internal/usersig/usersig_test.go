package usersig

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/tencentyun/tls-sig-api-v2-golang/tencentyun"
)

const (
	testApp = 1400000001
	testKey = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e"
	testID  = "administrator"
)

func genSig(t testing.TB, app int, key, id string, expire int) string {
	t.Helper()
	sig, err := tencentyun.GenUserSig(app, key, id, expire)
	if err != nil {
		t.Fatalf("GenUserSig: %v", err)
	}
	return sig
}

// encode wraps an arbitrary document the way a UserSig is wrapped.
func encode(doc string) string {
	var b bytes.Buffer
	w := zlib.NewWriter(&b)
	w.Write([]byte(doc))
	w.Close()
	return strings.NewReplacer("+", "*", "/", "-", "=", "_").Replace(base64.StdEncoding.EncodeToString(b.Bytes()))
}

func TestCheck(t *testing.T) {
	t.Parallel()
	now := time.Now()
	good := genSig(t, testApp, testKey, testID, 86400)
	tests := []struct {
		name     string
		sig      string
		key      string
		app      uint64
		id       string
		now      time.Time
		wantCode int
	}{
		{"valid", good, testKey, testApp, testID, now, 0},
		{"other key", good, "another-key", testApp, testID, now, CodeSigMismatch},
		{"other identifier", good, testKey, testApp, "alice", now, CodeIdentifierMismatch},
		{"other sdkappid", good, testKey, testApp + 1, testID, now, CodeSDKAppIDMismatch},
		{"expired", good, testKey, testApp, testID, now.Add(48 * time.Hour), CodeExpired},
		{"just before expiry", good, testKey, testApp, testID, now.Add(86400*time.Second - 5*time.Second), 0},
		{"empty", "", testKey, testApp, testID, now, CodeEmpty},
		{"garbage", "not a sig!", testKey, testApp, testID, now, CodeUnparsable},
		{"base64 but not zlib", base64.StdEncoding.EncodeToString([]byte("hello world")), testKey, testApp, testID, now, CodeUnparsable},
		{"zlib but not json", encode("hello"), testKey, testApp, testID, now, CodeUnparsable},
		{"json array", encode("[1,2]"), testKey, testApp, testID, now, CodeUnparsable},
		{"missing sig", encode(`{"TLS.identifier":"administrator","TLS.sdkappid":1400000001,"TLS.time":1,"TLS.expire":1}`), testKey, testApp, testID, now, CodeUnparsable},
		{"string sdkappid", encode(`{"TLS.identifier":"administrator","TLS.sdkappid":"1400000001","TLS.time":1,"TLS.expire":1,"TLS.sig":"x"}`), testKey, testApp, testID, now, CodeUnparsable},
		{"float time", encode(`{"TLS.identifier":"administrator","TLS.sdkappid":1400000001,"TLS.time":1.5,"TLS.expire":1,"TLS.sig":"x"}`), testKey, testApp, testID, now, CodeUnparsable},
		{"forged hmac", encode(`{"TLS.identifier":"administrator","TLS.sdkappid":1400000001,"TLS.time":1,"TLS.expire":99999999999,"TLS.sig":"AAAA"}`), testKey, testApp, testID, now, CodeSigMismatch},
		{"too long", strings.Repeat("A", MaxSigLen+1), testKey, testApp, testID, now, CodeUnparsable},
		{"zip bomb", encode(`{"TLS.sig":"` + strings.Repeat("A", MaxInflated) + `"}`), testKey, testApp, testID, now, CodeUnparsable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := Check(tt.sig, tt.key, tt.app, tt.id, tt.now)
			if got := CodeOf(err); got != tt.wantCode {
				t.Fatalf("Check code = %d (%v), want %d", got, err, tt.wantCode)
			}
			if err != nil && strings.Contains(err.Error(), testKey) {
				t.Fatalf("error %q holds the key", err)
			}
		})
	}
}

func TestVerifyClaims(t *testing.T) {
	t.Parallel()
	before := time.Now().Unix()
	sig := genSig(t, testApp, testKey, testID, 3600)
	c, err := Verify(sig, testKey, time.Now())
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if c.Identifier != testID || c.SDKAppID != testApp || c.Expire != 3600 || c.Version != "2.0" {
		t.Fatalf("claims = %+v", c)
	}
	if c.Time < before || c.Time > time.Now().Unix() {
		t.Fatalf("TLS.time = %d, want about %d", c.Time, before)
	}
	if _, err := Verify(sig, testKey, c.ExpiresAt().Add(time.Second)); CodeOf(err) != CodeExpired {
		t.Fatalf("Verify after expiry: %v, want %d", err, CodeExpired)
	}
	if _, err := Verify(sig, "wrong", time.Now()); CodeOf(err) != CodeSigMismatch {
		t.Fatalf("Verify with wrong key: %v, want %d", err, CodeSigMismatch)
	}
}

func TestSignRoundTrip(t *testing.T) {
	t.Parallel()
	for _, c := range []Claims{
		{Identifier: "admin", SDKAppID: 7, Time: 1000, Expire: 60},
		{Identifier: "admin", SDKAppID: 7, Time: 1000, Expire: 60, UserBuf: "AAEC", HasUserBuf: true},
	} {
		sig := Sign(c, testKey)
		if err := Check(sig, testKey, 7, "admin", time.Unix(1060, 0)); err != nil {
			t.Fatalf("Check(Sign(%+v)) at expiry instant: %v", c, err)
		}
		if err := Check(sig, testKey, 7, "admin", time.Unix(1061, 0)); CodeOf(err) != CodeExpired {
			t.Fatalf("Check one second after expiry: %v", err)
		}
	}
}

func TestUserBufFromTencent(t *testing.T) {
	t.Parallel()
	sig, err := tencentyun.GenUserSigWithBuf(testApp, testKey, testID, 600, []byte{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(sig, testKey, testApp, testID, time.Now()); err != nil {
		t.Fatalf("Check(sig with userbuf): %v", err)
	}
}

func FuzzVerify(f *testing.F) {
	f.Add(genSig(f, testApp, testKey, testID, 600), testKey)
	f.Add("", "")
	f.Add("eJyrVg==", "k")
	f.Add(encode(`{"TLS.identifier":"a","TLS.sdkappid":1,"TLS.time":1,"TLS.expire":9223372036854775807,"TLS.sig":"x"}`), "k")
	f.Fuzz(func(t *testing.T, sig, key string) {
		c, err := Verify(sig, key, time.Now())
		if err != nil {
			if CodeOf(err) == 0 {
				t.Fatalf("error without a code: %v", err)
			}
			return
		}
		_ = c.ExpiresAt()
		if err := Check(sig, key, c.SDKAppID, c.Identifier, time.Now()); err != nil {
			t.Fatalf("Verify accepted but Check refused: %v", err)
		}
	})
}
