package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/ratelimit"
)

// Values of timq_ratelimit_slots_total's outcome label.
const (
	// SlotGranted: a slot of the shared budget went to a caller, which then
	// called the API.
	SlotGranted = "granted"
	// SlotDropped: a slot Redis handed this process went unused before it
	// was granted: its caller woke more than one slot interval late (the
	// process was short of CPU), gave up (task canceled or timed out), or
	// a 60007 backoff voided it. A share of dropped slots above a percent
	// or two means the workers get the budget but cannot use it in time.
	SlotDropped = "dropped"
)

// NewBudgets returns a collector of the shared rate budgets' counters,
// read from stats at every scrape (stats only loads atomic counters):
//
//	timq_ratelimit_slots_total{endpoint,outcome}        budget slots this process reserved, by SlotGranted or SlotDropped
//	timq_ratelimit_redis_commands_total{endpoint}       Redis commands the shared budget sent
//	timq_ratelimit_fallback_grants_total{endpoint}      calls let through by the local fallback rate while Redis did not answer
//
// stats is Worker.BudgetStats of package worker; it returns nil when the
// worker paces each process on its own (no shared budget), and then the
// collector reports nothing.
func NewBudgets(stats func() map[chatapi.Endpoint]ratelimit.SharedStats) prometheus.Collector {
	return budgets{stats: stats}
}

var (
	slotsDesc = prometheus.NewDesc("timq_ratelimit_slots_total",
		"Slots of the endpoint's shared rate budget (one API call each) this process took, by outcome: granted (a call went; this includes fallback grants) or dropped (a slot Redis handed this process went unused before it was granted: the caller woke more than a slot interval late, gave up, or a 60007 backoff voided it).",
		[]string{"endpoint", "outcome"}, nil)
	budgetCommandsDesc = prometheus.NewDesc("timq_ratelimit_redis_commands_total",
		"Redis commands the endpoint's shared budget sent to reserve slots.",
		[]string{"endpoint"}, nil)
	fallbackDesc = prometheus.NewDesc("timq_ratelimit_fallback_grants_total",
		"Calls the local fallback rate let through while Redis did not answer (the shared budget could not be asked).",
		[]string{"endpoint"}, nil)
)

type budgets struct {
	stats func() map[chatapi.Endpoint]ratelimit.SharedStats
}

func (b budgets) Describe(ch chan<- *prometheus.Desc) {
	ch <- slotsDesc
	ch <- budgetCommandsDesc
	ch <- fallbackDesc
}

func (b budgets) Collect(ch chan<- prometheus.Metric) {
	for ep, st := range b.stats() {
		name := ep.Short()
		ch <- prometheus.MustNewConstMetric(slotsDesc, prometheus.CounterValue, float64(st.Grants), name, SlotGranted)
		ch <- prometheus.MustNewConstMetric(slotsDesc, prometheus.CounterValue, float64(st.Wasted), name, SlotDropped)
		ch <- prometheus.MustNewConstMetric(budgetCommandsDesc, prometheus.CounterValue, float64(st.Commands), name)
		ch <- prometheus.MustNewConstMetric(fallbackDesc, prometheus.CounterValue, float64(st.FallbackGrants), name)
	}
}
