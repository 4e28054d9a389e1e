package dashboard

import (
	"context"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/timq/timq/internal/jobs"
)

// jobsListLimit is how many jobs the jobs page and its JSON list show,
// newest first.
const jobsListLimit = 200

// jobFailuresShown is how many failures a job's page lists; the rest are
// one `timq jobs failures ID` away.
const jobFailuresShown = 500

// jobsWeb serves the jobs pages: a list with progress, and each job with
// its failures and, unless read-only, pause, resume and cancel buttons.
type jobsWeb struct {
	store    *jobs.Store
	root     string
	readOnly bool
	log      *slog.Logger
}

// jobView is a job as the pages show it.
type jobView struct {
	jobs.Job
	Percent float64 // applied + dead-lettered + cancelled, of total
}

func viewOf(j jobs.Job) jobView {
	v := jobView{Job: j}
	if c := j.Counts; c.Total > 0 {
		v.Percent = float64(c.Applied+c.DeadLettered+c.Cancelled) * 100 / float64(c.Total)
	}
	return v
}

func (d *jobsWeb) ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), 10*time.Second)
}

// apiList answers GET .../jobs/api/jobs with the newest jobs as JSON.
func (d *jobsWeb) apiList(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := d.ctx(r)
	defer cancel()
	js, err := d.store.List(ctx, jobsListLimit)
	if err != nil {
		d.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"jobs": js})
}

// apiGet answers GET .../jobs/api/jobs/{id} with one job as JSON.
func (d *jobsWeb) apiGet(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := d.ctx(r)
	defer cancel()
	j, err := d.store.Get(ctx, r.PathValue("id"))
	if err != nil {
		d.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, j)
}

// fail answers an error as JSON: 404 for an unknown job, 409 for a job that
// has ended, 503 for Redis trouble.
func (d *jobsWeb) fail(w http.ResponseWriter, err error) {
	status := http.StatusServiceUnavailable
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, jobs.ErrEnded):
		status = http.StatusConflict
	default:
		d.log.Warn("dashboard: cannot read jobs", "error", err)
	}
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

// list serves the jobs page.
func (d *jobsWeb) list(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := d.ctx(r)
	defer cancel()
	js, err := d.store.List(ctx, jobsListLimit)
	if err != nil {
		d.log.Warn("dashboard: cannot read jobs", "error", err)
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	views := make([]jobView, len(js))
	for i, j := range js {
		views[i] = viewOf(j)
	}
	d.render(w, jobsListTmpl, map[string]any{"Root": d.root, "Jobs": views, "Limit": jobsListLimit})
}

// show serves one job's page.
func (d *jobsWeb) show(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := d.ctx(r)
	defer cancel()
	j, err := d.store.Get(ctx, r.PathValue("id"))
	if errors.Is(err, jobs.ErrNotFound) {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	var fs []jobs.Failure
	if err == nil {
		fs, err = d.store.Failures(ctx, j.ID)
	}
	if err != nil {
		d.log.Warn("dashboard: cannot read a job", "error", err)
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	more := len(fs) - jobFailuresShown
	if more > 0 {
		fs = fs[:jobFailuresShown]
	}
	d.render(w, jobTmpl, map[string]any{
		"Root": d.root, "Job": viewOf(j), "Failures": fs, "More": more,
		"Controls": !d.readOnly && !j.Finished, "Notice": r.URL.Query().Get("done"),
	})
}

// control handles POST .../jobs/{id}/{action} from a job page's buttons and
// sends the browser back to the job's page. A read-only dashboard answers
// 405 and changes nothing.
func (d *jobsWeb) control(w http.ResponseWriter, r *http.Request) {
	if d.readOnly {
		http.Error(w, "the dashboard is read-only", http.StatusMethodNotAllowed)
		return
	}
	ctx, cancel := d.ctx(r)
	defer cancel()
	id, action := r.PathValue("id"), r.PathValue("action")
	var err error
	switch action {
	case "pause":
		_, err = d.store.Pause(ctx, id)
	case "resume":
		_, err = d.store.Resume(ctx, id)
	case "cancel":
		_, err = d.store.Cancel(ctx, id)
	default:
		http.Error(w, "unknown action "+action+": want pause, resume or cancel", http.StatusNotFound)
		return
	}
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	case errors.Is(err, jobs.ErrEnded):
		http.Error(w, err.Error(), http.StatusConflict)
		return
	case err != nil:
		d.log.Warn("dashboard: cannot change a job", "action", action, "error", err)
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	d.log.Info("dashboard: job "+action, "job_id", id)
	http.Redirect(w, r, d.root+"/jobs/"+id+"?done="+action, http.StatusSeeOther)
}

func (d *jobsWeb) render(w http.ResponseWriter, t *template.Template, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := t.Execute(w, data); err != nil {
		d.log.Warn("dashboard: render a jobs page", "error", err)
	}
}

var jobFuncs = template.FuncMap{
	"ts":  func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
	"pct": func(f float64) string { return formatFloat(f, 1) + "%" },
	// width is a progress bar's fill: a number the page makes, so it is
	// safe as CSS.
	"width": func(f float64) template.CSS { return template.CSS("width:" + formatFloat(f, 1) + "%") },
	"rate": func(j jobView) string {
		if j.Rate <= 0 {
			return "–"
		}
		return formatFloat(j.Rate, 1) + " ops/s"
	},
	"eta": func(j jobView) string {
		if j.ETA == nil {
			return "–"
		}
		return "in " + time.Until(*j.ETA).Round(time.Second).String()
	},
}

func formatFloat(f float64, prec int) string { return strconv.FormatFloat(f, 'f', prec, 64) }

const jobsStyle = `<style>
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}code{font-size:12px}.muted{color:#666}
.bar{background:#eee;width:12em;height:1em;display:inline-block;vertical-align:middle}
.bar span{background:#3a7;height:100%;display:block}
form{display:inline}button{margin-right:.5em}
</style>`

var jobsListTmpl = template.Must(template.New("jobs").Funcs(jobFuncs).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5"><title>timq jobs</title>` + jobsStyle + `</head><body>
<h1>Jobs <span class="muted">(newest {{.Limit}} at most)</span></h1>
<p class="muted">Bulk jobs and their exact counts: total = waiting + in flight + applied + dead-lettered + cancelled. The page refreshes every 5 s.
<a href="{{.Root}}/">Back to the dashboard</a> · <a href="{{.Root}}/dlq/">Dead letters</a> · <a href="{{.Root}}/jobs/api/jobs">JSON</a></p>
<table><thead><tr><th>job</th><th>name</th><th>state</th><th>progress</th><th>total</th><th>applied</th><th>dead-lettered</th><th>cancelled</th><th>waiting</th><th>in flight</th><th>rate</th><th>ETA</th><th>created</th></tr></thead><tbody>
{{range .Jobs}}<tr class="job"><td><a href="{{$.Root}}/jobs/{{.ID}}"><code>{{.ID}}</code></a></td><td>{{.Name}}</td><td class="state">{{.State}}</td>
<td><span class="bar" title="{{pct .Percent}}"><span style="{{width .Percent}}"></span></span> {{pct .Percent}}</td>
<td>{{.Counts.Total}}</td><td>{{.Counts.Applied}}</td><td>{{.Counts.DeadLettered}}</td><td>{{.Counts.Cancelled}}</td><td>{{.Counts.Waiting}}</td><td>{{.Counts.InFlight}}</td>
<td>{{rate .}}</td><td>{{eta .}}</td><td>{{ts .Created}}</td></tr>
{{else}}<tr><td colspan="13" class="muted">No jobs. <code>timq bulk FILE</code> makes one.</td></tr>{{end}}
</tbody></table>
</body></html>
`))

var jobTmpl = template.Must(template.New("job").Funcs(jobFuncs).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>timq job {{.Job.ID}}</title>` + jobsStyle + `</head><body>
<h1>Job <code>{{.Job.ID}}</code>{{if .Job.Name}} ({{.Job.Name}}){{end}}: <span id="state">{{.Job.State}}</span></h1>
{{if .Notice}}<p id="notice">{{.Notice}}: done.</p>{{end}}
<p><span class="bar"><span style="{{width .Job.Percent}}"></span></span> {{pct .Job.Percent}} ·
rate {{rate .Job}} · ETA {{eta .Job}} · weight {{.Job.Weight}} · created {{ts .Job.Created}}{{if .Job.Ended}} · ended {{ts .Job.Ended}}{{end}}</p>
<table><thead><tr><th></th><th>total</th><th>applied</th><th>dead-lettered</th><th>cancelled</th><th>waiting</th><th>in flight</th></tr></thead><tbody>
<tr><td>all</td><td>{{.Job.Counts.Total}}</td><td>{{.Job.Counts.Applied}}</td><td>{{.Job.Counts.DeadLettered}}</td><td>{{.Job.Counts.Cancelled}}</td><td>{{.Job.Counts.Waiting}}</td><td>{{.Job.Counts.InFlight}}</td></tr>
{{range $t, $c := .Job.ByType}}{{if $c.Total}}<tr><td>{{$t}}</td><td>{{$c.Total}}</td><td>{{$c.Applied}}</td><td>{{$c.DeadLettered}}</td><td>{{$c.Cancelled}}</td><td>{{$c.Waiting}}</td><td>{{$c.InFlight}}</td></tr>{{end}}{{end}}
{{with .Job.RecallMessages}}<tr id="recall-messages"><td>recalled messages</td><td>{{.Total}}</td><td>{{.Applied}}</td><td>{{.DeadLettered}}</td><td>{{.Cancelled}}</td><td>{{.Waiting}}</td><td>{{.InFlight}}</td></tr>{{end}}
</tbody></table>
{{with .Job.Notice}}<p id="job-notice">Completion notice: {{.State}} after {{.Attempts}} attempts{{if .Error}} (last: {{.Error}}){{end}}</p>{{end}}
{{if .Controls}}<p>
<form method="post" action="{{.Root}}/jobs/{{.Job.ID}}/pause"><button id="pause">Pause</button></form>
<form method="post" action="{{.Root}}/jobs/{{.Job.ID}}/resume"><button id="resume">Resume</button></form>
<form method="post" action="{{.Root}}/jobs/{{.Job.ID}}/cancel" onsubmit="return confirm('Cancel this job? Its operations not yet sent will never reach the API.')"><button id="cancel">Cancel</button></form>
</p>{{end}}
<h2>Failures <span class="muted">({{.Job.Counts.DeadLettered}})</span></h2>
<p class="muted">Every dead-lettered operation of the job. <code>timq jobs failures {{.Job.ID}}</code> prints them as bulk lines;
<code>timq jobs retry-failed {{.Job.ID}}</code> makes a new job of them. <a href="{{.Root}}/jobs/">All jobs</a> · <a href="{{.Root}}/jobs/api/jobs/{{.Job.ID}}">JSON</a></p>
<table><thead><tr><th>operation</th><th>code</th><th>info</th><th>payload</th></tr></thead><tbody>
{{range .Failures}}<tr class="failure"><td>{{.Op}}</td><td>{{.Code}}</td><td>{{.Info}}</td><td><code>{{printf "%s" .Payload}}</code></td></tr>
{{else}}<tr><td colspan="4" class="muted">No failures.</td></tr>{{end}}
{{if gt .More 0}}<tr><td colspan="4" class="muted">and {{.More}} more: timq jobs failures {{.Job.ID}}</td></tr>{{end}}
</tbody></table>
</body></html>
`))
