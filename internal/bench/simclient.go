package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/timq/timq/internal/sim"
)

// simClient calls the emulator's admin API (/_sim/...).
type simClient struct {
	base string
	hc   *http.Client
}

func newSimClient(base string) *simClient {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 16
	return &simClient{base: base, hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

func (c *simClient) do(ctx context.Context, method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("sim %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("sim %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("sim %s %s: HTTP %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("sim %s %s: %w", method, path, err)
		}
	}
	return nil
}

// Reset drops every group and zeroes the statistics and limiter windows.
func (c *simClient) Reset(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/_sim/reset", nil, nil)
}

// Seed creates groups with their messages in one call.
func (c *simClient) Seed(ctx context.Context, groups []sim.SeedGroup) error {
	return c.do(ctx, http.MethodPost, "/_sim/seed", sim.SeedFile{Groups: groups}, nil)
}

// Stats returns the emulator's counters.
func (c *simClient) Stats(ctx context.Context) (sim.Stats, error) {
	var st sim.Stats
	err := c.do(ctx, http.MethodGet, "/_sim/stats", nil, &st)
	return st, err
}

// Message returns one message's state.
func (c *simClient) Message(ctx context.Context, group string, seq uint64) (sim.MessageState, error) {
	var m sim.MessageState
	err := c.do(ctx, http.MethodGet, "/_sim/groups/"+url.PathEscape(group)+"/messages/"+strconv.FormatUint(seq, 10), nil, &m)
	return m, err
}

// Group returns one group's state.
func (c *simClient) Group(ctx context.Context, group string) (sim.GroupInfo, error) {
	var g sim.GroupInfo
	err := c.do(ctx, http.MethodGet, "/_sim/groups/"+url.PathEscape(group), nil, &g)
	return g, err
}
