package chatapi

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNewValidation(t *testing.T) {
	t.Parallel()
	valid := func() Config { return Config{SDKAppID: testApp, SecretKey: testKey, Region: "sgp"} }
	cases := []struct {
		name    string
		mod     func(*Config)
		wantErr string // "" for success
	}{
		{"valid region", func(*Config) {}, ""},
		{"valid base URL", func(c *Config) { c.Region, c.BaseURL = "", "http://127.0.0.1:9000" }, ""},
		{"no SDKAppID", func(c *Config) { c.SDKAppID = 0 }, "chatapi: SDKAppID: must be set"},
		{"no SecretKey", func(c *Config) { c.SecretKey = "" }, "chatapi: SecretKey: must be set"},
		{"no Region or BaseURL", func(c *Config) { c.Region = "" }, "chatapi: Region or BaseURL: one must be set"},
		{"both Region and BaseURL", func(c *Config) { c.BaseURL = "http://x" }, "chatapi: Region or BaseURL: set one, not both"},
		{"unknown region", func(c *Config) { c.Region = "xx" },
			`chatapi: Region: unknown region "xx" (want cn, ger, idn, ind, jpn, kr, sgp, usa)`},
		{"relative base URL", func(c *Config) { c.Region, c.BaseURL = "", "127.0.0.1:9000" }, "chatapi: BaseURL: "},
		{"base URL without host", func(c *Config) { c.Region, c.BaseURL = "", "http://" }, "chatapi: BaseURL: "},
		{"base URL with query", func(c *Config) { c.Region, c.BaseURL = "", "http://h/?a=b" }, "chatapi: BaseURL: "},
		{"ftp base URL", func(c *Config) { c.Region, c.BaseURL = "", "ftp://h" }, "chatapi: BaseURL: "},
		{"short SigTTL", func(c *Config) { c.SigTTL = time.Second }, "chatapi: SigTTL: 1s is shorter than 1m0s"},
		{"negative SigTTL", func(c *Config) { c.SigTTL = -time.Hour }, "chatapi: SigTTL: "},
		{"huge SigTTL", func(c *Config) { c.SigTTL = 1 << 62 }, "chatapi: SigTTL: "},
		{"negative MaxResponseBytes", func(c *Config) { c.MaxResponseBytes = -1 }, "chatapi: MaxResponseBytes: -1 is negative"},
		{"negative Timeout", func(c *Config) { c.Timeout = -time.Second }, "chatapi: Timeout: -1s is negative"},
		{"negative MaxConns", func(c *Config) { c.MaxConns = -1 }, "chatapi: MaxConns: -1 is negative"},
		{"blank SecretKey", func(c *Config) { c.SecretKey = "  " }, "chatapi: SecretKey: must be set (not blank)"},
		{"blank Admin", func(c *Config) { c.Admin = " " }, `chatapi: Admin: must not be blank or start or end with white space, got " "`},
		{"Admin with a space around", func(c *Config) { c.Admin = "administrator " }, "chatapi: Admin: must not be blank"},
		// The password is shown redacted, never as given.
		{"base URL with user info", func(c *Config) { c.Region, c.BaseURL = "", "http://user:hunter2@127.0.0.1:9000" },
			`chatapi: BaseURL: "http://user:xxxxx@127.0.0.1:9000" must not have a query, fragment or user info`},
		{"unparsable base URL with user info", func(c *Config) { c.Region, c.BaseURL = "", "http://user:hunter2@127.0.0.1:port" },
			`chatapi: BaseURL: is not a URL: invalid port ":port" after host`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := valid()
			tc.mod(&cfg)
			c, err := New(cfg)
			if tc.wantErr == "" {
				if err != nil || c == nil {
					t.Fatalf("New = %v, %v; want a client", c, err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
				t.Fatalf("New error = %v, want prefix %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), testKey) {
				t.Errorf("error leaks the key: %v", err)
			}
		})
	}
}

func TestNewDefaults(t *testing.T) {
	t.Parallel()
	c, err := New(Config{SDKAppID: testApp, SecretKey: testKey, Region: "cn"})
	if err != nil {
		t.Fatal(err)
	}
	if c.admin != DefaultAdmin || c.maxBody != DefaultMaxResponseBytes || c.sig.ttl != DefaultSigTTL ||
		c.base != "https://console.tim.qq.com" || c.app != "1400000001" || c.rand == nil || c.sig.now == nil {
		t.Errorf("defaults not applied: %+v", c)
	}
	if c.tr.timeout != DefaultTimeout || DefaultTimeout <= 3*time.Second {
		t.Errorf("timeout = %s, want %s (> Tencent's 3s)", c.tr.timeout, DefaultTimeout)
	}
	if tr := c.tr.hc.Transport.(*http.Transport); tr.MaxConnsPerHost != DefaultMaxConns || tr.MaxIdleConnsPerHost != DefaultMaxConns ||
		tr.IdleConnTimeout != idleConnTimeout || tr.TLSHandshakeTimeout != DefaultTimeout || tr.Proxy == nil {
		t.Errorf("transport = %+v, want %d connections kept alive %s, proxies from the environment", tr, DefaultMaxConns, idleConnTimeout)
	}

	c2, err := New(Config{SDKAppID: testApp, SecretKey: testKey, BaseURL: "http://h", Timeout: time.Minute, MaxConns: 7,
		Admin: "ops", SigTTL: time.Hour, MaxResponseBytes: 10})
	if err != nil {
		t.Fatal(err)
	}
	if c2.tr.timeout != time.Minute || c2.tr.hc.Transport.(*http.Transport).MaxConnsPerHost != 7 ||
		c2.tr.maxBody != 10 || c2.admin != "ops" || c2.sig.ttl != time.Hour || c2.maxBody != 10 {
		t.Errorf("explicit settings not kept: %+v (transport %+v)", c2, c2.tr.hc)
	}

	// A caller's own HTTP client is used as it is.
	own := &http.Client{}
	c3, err := New(Config{SDKAppID: testApp, SecretKey: testKey, BaseURL: "http://h", HTTPClient: own})
	if err != nil || c3.tr.hc != own {
		t.Errorf("Config.HTTPClient not used: %v", err)
	}
}

func TestRegionBaseURL(t *testing.T) {
	t.Parallel()
	want := map[string]string{
		"cn":  "https://console.tim.qq.com",
		"sgp": "https://adminapisgp.im.qcloud.com",
		"kr":  "https://adminapikr.im.qcloud.com",
		"jpn": "https://adminapijpn.im.qcloud.com",
		"ger": "https://adminapiger.im.qcloud.com",
		"usa": "https://adminapiusa.im.qcloud.com",
		"idn": "https://adminapiidn.im.qcloud.com",
		"ind": "https://adminapiind.im.qcloud.com",
	}
	for region, base := range want {
		got, err := RegionBaseURL(region)
		if err != nil || got != base {
			t.Errorf("RegionBaseURL(%q) = %q, %v; want %q", region, got, err, base)
		}
	}
	if !slices.IsSorted(Regions) || len(Regions) != len(want) {
		t.Errorf("Regions = %v, want the %d names sorted", Regions, len(want))
	}
	for _, r := range Regions {
		if _, ok := want[r]; !ok {
			t.Errorf("Regions has unexpected %q", r)
		}
	}
	for _, bad := range []string{"", "CN", "sg", "us"} {
		if _, err := RegionBaseURL(bad); err == nil || !strings.Contains(err.Error(), "want cn, ger,") {
			t.Errorf("RegionBaseURL(%q) error = %v", bad, err)
		}
	}
}

func TestConfigDoesNotPrintKey(t *testing.T) {
	t.Parallel()
	cfg := Config{SDKAppID: testApp, SecretKey: testKey, Region: "sgp"}
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		s := fmt.Sprintf(format, cfg)
		assertNoSecrets(t, format+" of Config", s)
		if !strings.Contains(s, "REDACTED") || !strings.Contains(s, "1400000001") {
			t.Errorf("%s of Config = %s, want SDKAppID shown and key redacted", format, s)
		}
		assertNoSecrets(t, format+" of *Config", fmt.Sprintf(format, &cfg))
	}

	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "cfg", cfg)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("config", "cfg", cfg)
	assertNoSecrets(t, "slog", buf.String())
	if !strings.Contains(buf.String(), `"secret_key":"REDACTED"`) {
		t.Errorf("slog output = %s", buf.String())
	}

	// The Client keeps the key only inside closures, so printing a Client
	// (even deeply) cannot reveal it, nor the cached sig.
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := c.sig.get()
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"%v", "%+v", "%#v"} {
		assertNoSecrets(t, format+" of Client", fmt.Sprintf(format, c), sig)
		assertNoSecrets(t, format+" of *Client", fmt.Sprintf(format, *c), sig)
	}
}
