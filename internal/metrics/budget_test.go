package metrics_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/metrics"
	"github.com/timq/timq/internal/ratelimit"
)

func TestBudgetsReportEachScrapesCounters(t *testing.T) {
	t.Parallel()
	stats := map[chatapi.Endpoint]ratelimit.SharedStats{
		chatapi.EndpointClear:  {Commands: 7, Grants: 100, Reserved: 104, Wasted: 4, FallbackGrants: 2},
		chatapi.EndpointModify: {Commands: 1, Grants: 3, Reserved: 3},
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(metrics.NewBudgets(func() map[chatapi.Endpoint]ratelimit.SharedStats { return stats })); err != nil {
		t.Fatal(err)
	}
	check := func(name string, labels map[string]string, want float64) {
		t.Helper()
		if got := val(t, reg, name, labels); got != want {
			t.Errorf("%s%v = %v, want %v", name, labels, got, want)
		}
	}
	check("timq_ratelimit_slots_total", map[string]string{"endpoint": "clear_group_msg", "outcome": metrics.SlotGranted}, 100)
	check("timq_ratelimit_slots_total", map[string]string{"endpoint": "clear_group_msg", "outcome": metrics.SlotDropped}, 4)
	check("timq_ratelimit_redis_commands_total", map[string]string{"endpoint": "clear_group_msg"}, 7)
	check("timq_ratelimit_fallback_grants_total", map[string]string{"endpoint": "clear_group_msg"}, 2)
	check("timq_ratelimit_slots_total", map[string]string{"endpoint": "modify_group_msg", "outcome": metrics.SlotGranted}, 3)
	check("timq_ratelimit_slots_total", map[string]string{"endpoint": "group_msg_recall"}, 0)

	// Counters are read at each scrape, not copied once.
	stats[chatapi.EndpointClear] = ratelimit.SharedStats{Grants: 150, Wasted: 9}
	check("timq_ratelimit_slots_total", map[string]string{"endpoint": "clear_group_msg", "outcome": metrics.SlotGranted}, 150)
	check("timq_ratelimit_slots_total", map[string]string{"endpoint": "clear_group_msg", "outcome": metrics.SlotDropped}, 9)
}

func TestBudgetsWithoutSharedBudgetReportNothing(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	if err := reg.Register(metrics.NewBudgets(func() map[chatapi.Endpoint]ratelimit.SharedStats { return nil })); err != nil {
		t.Fatal(err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(fams) != 0 {
		t.Errorf("gathered %d metric families without a shared budget, want 0", len(fams))
	}
}
