package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/timq/timq/internal/dlq"
)

// Paging of the dead-letter API and page.
const (
	// DefaultDLQLimit is how many entries one answer holds when ?limit is absent.
	DefaultDLQLimit = 100
	// MaxDLQLimit is the most entries one answer holds.
	MaxDLQLimit = 1000
)

// dlqEntry is one entry as the dead-letter API shows it: the store's
// entry plus the payload's one-line summary.
type dlqEntry struct {
	dlq.Entry
	Summary string `json:"summary"`
}

// dlqPage is the answer of GET .../dlq/api/entries.
type dlqPage struct {
	Total   int64      `json:"total"`
	Offset  int        `json:"offset"`
	Limit   int        `json:"limit"`
	Code    int        `json:"code,omitempty"`
	Entries []dlqEntry `json:"entries"`
}

// dlqWeb serves the read-only view of the dead-letter store.
type dlqWeb struct {
	store *dlq.Store
	root  string // "" or "/dashboard"
	log   *slog.Logger
}

func (d *dlqWeb) page(r *http.Request) (dlqPage, int, error) {
	q := r.URL.Query()
	p := dlqPage{Limit: DefaultDLQLimit}
	var err error
	if v := q.Get("offset"); v != "" {
		if p.Offset, err = strconv.Atoi(v); err != nil || p.Offset < 0 {
			return p, http.StatusBadRequest, errors.New("offset: want a whole number >= 0")
		}
	}
	if v := q.Get("limit"); v != "" {
		if p.Limit, err = strconv.Atoi(v); err != nil || p.Limit < 1 || p.Limit > MaxDLQLimit {
			return p, http.StatusBadRequest, errors.New("limit: want 1 to " + strconv.Itoa(MaxDLQLimit))
		}
	}
	if v := q.Get("code"); v != "" {
		if p.Code, err = strconv.Atoi(v); err != nil {
			return p, http.StatusBadRequest, errors.New("code: want an ErrorCode")
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	entries, err := d.store.List(ctx, dlq.ListOptions{Offset: p.Offset, Limit: p.Limit, Code: p.Code})
	if err != nil {
		return p, http.StatusServiceUnavailable, err
	}
	if p.Code == 0 {
		p.Total, err = d.store.Count(ctx)
	} else {
		var by map[int]int64
		by, err = d.store.CountByCode(ctx)
		p.Total = by[p.Code]
	}
	if err != nil {
		return p, http.StatusServiceUnavailable, err
	}
	p.Entries = make([]dlqEntry, len(entries))
	for i, e := range entries {
		p.Entries[i] = entryView(e)
	}
	return p, 0, nil
}

func entryView(e dlq.Entry) dlqEntry {
	s := Summary(e.Type, e.Payload)
	if e.Invalid {
		s = "invalid payload (kept as text)"
		if e.PayloadEncoding == "base64" {
			s = "invalid payload (not UTF-8, kept as base64)"
		}
	}
	return dlqEntry{Entry: e, Summary: s}
}

// list answers GET .../dlq/api/entries?offset=N&limit=N&code=N with a
// dlqPage, oldest entries first.
func (d *dlqWeb) list(w http.ResponseWriter, r *http.Request) {
	p, status, err := d.page(r)
	if err != nil {
		d.fail(w, status, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

// get answers GET .../dlq/api/entries/{id} with one entry, or 404.
func (d *dlqWeb) get(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	e, err := d.store.Get(ctx, r.PathValue("id"))
	if errors.Is(err, dlq.ErrNotFound) {
		d.fail(w, http.StatusNotFound, err)
		return
	}
	if err != nil {
		d.fail(w, http.StatusServiceUnavailable, err)
		return
	}
	writeJSON(w, http.StatusOK, entryView(e))
}

func (d *dlqWeb) fail(w http.ResponseWriter, status int, err error) {
	if status >= 500 {
		d.log.Warn("dashboard: cannot read the dead-letter store", "error", err)
	}
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

var pageTmpl = template.Must(template.New("dlq").Funcs(template.FuncMap{
	"add": func(a, b int) int { return a + b },
	"ts":  func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>timq dead letters</title>
<style>
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}code{font-size:12px}.muted{color:#666}
</style></head><body>
<h1>Dead letters <span class="muted">({{.Page.Total}} held{{if .Page.Code}} with code {{.Page.Code}}{{end}})</span></h1>
<p class="muted">timq's durable dead-letter store: every operation the worker gave up on, kept until requeued or purged.
asynq's archive (the dashboard's "Archived" tab) shows the same failures as tasks but is trimmed by asynq; this store is not.
Act on entries with <code>timq dlq requeue ID</code> or <code>timq dlq purge ID</code>. <a href="{{.Root}}/">Back to the dashboard</a> ·
<a href="{{.Root}}/dlq/api/entries">JSON</a></p>
<table><thead><tr><th>#</th><th>failed at</th><th>id</th><th>operation</th><th>code</th><th>reason</th><th>attempts</th><th>info</th></tr></thead><tbody>
{{range $i, $e := .Page.Entries}}<tr><td>{{add $.Page.Offset (add $i 1)}}</td><td>{{ts $e.FailedAt}}</td><td><code>{{$e.ID}}</code></td><td>{{$e.Summary}}</td><td>{{$e.Code}}</td><td>{{$e.Reason}}</td><td>{{$e.Attempts}}</td><td>{{$e.Info}}</td></tr>
{{else}}<tr><td colspan="8" class="muted">No dead letters.</td></tr>{{end}}
</tbody></table>
<p>{{if .Prev}}<a href="?offset={{.PrevOffset}}&amp;limit={{.Page.Limit}}{{if .Page.Code}}&amp;code={{.Page.Code}}{{end}}">&larr; newer</a>{{end}}
{{if .Next}}<a href="?offset={{.NextOffset}}&amp;limit={{.Page.Limit}}{{if .Page.Code}}&amp;code={{.Page.Code}}{{end}}">older &rarr;</a>{{end}}</p>
</body></html>
`))

// html serves the dead-letter page: a table of one page of entries, oldest
// first, with links to the next page.
func (d *dlqWeb) html(w http.ResponseWriter, r *http.Request) {
	p, status, err := d.page(r)
	if err != nil {
		if status >= 500 {
			d.log.Warn("dashboard: cannot read the dead-letter store", "error", err)
		}
		http.Error(w, err.Error(), status)
		return
	}
	data := struct {
		Page                   dlqPage
		Root                   string
		Prev, Next             bool
		PrevOffset, NextOffset int
	}{Page: p, Root: d.root}
	data.Prev, data.PrevOffset = p.Offset > 0, max(0, p.Offset-p.Limit)
	data.Next, data.NextOffset = int64(p.Offset+len(p.Entries)) < p.Total, p.Offset+p.Limit
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := pageTmpl.Execute(w, data); err != nil {
		d.log.Warn("dashboard: render the dead-letter page", "error", err)
	}
}
