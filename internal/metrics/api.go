package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// API holds the HTTP API's metrics. A nil *API records nothing.
type API struct {
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	callbacks *prometheus.CounterVec
}

// NewAPI registers the API's metrics on reg: requests by route (the
// pattern, such as "POST /v1/jobs/{id}/cancel", never an ID) and status,
// and their duration by route.
func NewAPI(reg prometheus.Registerer) (*API, error) {
	a := &API{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "timq_api_requests_total", Help: "HTTP API requests by route and status.",
		}, []string{"route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "timq_api_request_duration_seconds", Help: "HTTP API request duration by route.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10, 60},
		}, []string{"route"}),
		callbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "timq_callbacks_total", Help: "Tencent webhook callbacks by outcome: indexed, ignored (another command), refused_app, refused_sign, refused_stale, refused_body, failed.",
		}, []string{"outcome"}),
	}
	for _, c := range []prometheus.Collector{a.requests, a.duration, a.callbacks} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// Request records one request. An unmatched route is counted as "other".
func (a *API) Request(route string, status int, d time.Duration) {
	if a == nil {
		return
	}
	if route == "" {
		route = "other"
	}
	a.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	a.duration.WithLabelValues(route).Observe(d.Seconds())
}

// Callback counts one webhook callback by outcome.
func (a *API) Callback(outcome string) {
	if a == nil {
		return
	}
	a.callbacks.WithLabelValues(outcome).Inc()
}
