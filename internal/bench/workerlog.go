package bench

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/timq/timq/internal/ratelimit"
)

// budgetStatsFromLog reads a stopped worker's JSON log and returns its
// shared budgets' counters by endpoint short name, from the "worker
// stopped" line the worker writes last. They cover the worker's whole
// life.
func budgetStatsFromLog(path string) (map[string]ratelimit.SharedStats, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := parseBudgetStats(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return st, nil
}

// parseBudgetStats finds the last "worker stopped" line in a JSON log and
// decodes its per-endpoint ratelimit.SharedStats. Lines that are not JSON
// (a Go runtime message, say) are skipped.
func parseBudgetStats(r io.Reader) (map[string]ratelimit.SharedStats, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var out map[string]ratelimit.SharedStats
	for sc.Scan() {
		var line map[string]json.RawMessage
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			continue
		}
		var msg string
		if json.Unmarshal(line["msg"], &msg) != nil || msg != "worker stopped" {
			continue
		}
		out = map[string]ratelimit.SharedStats{}
		for k, v := range line {
			var st ratelimit.SharedStats
			if k == "time" || k == "level" || k == "msg" || json.Unmarshal(v, &st) != nil {
				continue
			}
			out[k] = st
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if out == nil {
		return nil, errors.New(`no "worker stopped" line`)
	}
	return out, nil
}

// droppedShare is the share of the slots a worker took that it left
// unused before they were granted (ratelimit.SharedStats.Wasted), over
// granted + dropped; -1 when it took none.
func droppedShare(st ratelimit.SharedStats) float64 {
	if st.Grants+st.Wasted == 0 {
		return -1
	}
	return float64(st.Wasted) / float64(st.Grants+st.Wasted)
}

// workersBudgetStats sums the budget counters of stopped workers by
// endpoint short name, from their logs in logDir.
func workersBudgetStats(logDir string, ws []*proc) (map[string]ratelimit.SharedStats, error) {
	sum := map[string]ratelimit.SharedStats{}
	for _, w := range ws {
		st, err := budgetStatsFromLog(filepath.Join(logDir, w.Name+".log"))
		if err != nil {
			return nil, err
		}
		for ep, s := range st {
			t := sum[ep]
			t.Commands += s.Commands
			t.Grants += s.Grants
			t.Reserved += s.Reserved
			t.Wasted += s.Wasted
			t.FallbackGrants += s.FallbackGrants
			sum[ep] = t
		}
	}
	return sum, nil
}
