package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultQueueStatsInterval is how often QueueStats reads Redis when
// QueueStatsConfig.Interval is zero.
const DefaultQueueStatsInterval = 5 * time.Second

// QueueInspector is the part of *asynq.Inspector QueueStats reads.
type QueueInspector interface {
	Queues() ([]string, error)
	GetQueueInfo(queue string) (*asynq.QueueInfo, error)
}

// DeadLetterCounter is the part of *dlq.Store QueueStats reads.
type DeadLetterCounter interface {
	Count(ctx context.Context) (int64, error)
}

// JobCounter is the part of *jobs.Store QueueStats reads.
type JobCounter interface {
	CountByState(ctx context.Context) (map[string]int64, error)
}

// JobStates lists the values of timq_jobs' state label.
var JobStates = []string{"queued", "running", "paused", "done", "cancelled"}

// QueueStatsConfig configures QueueStats.
type QueueStatsConfig struct {
	// Inspector reads asynq's queues. Required.
	Inspector QueueInspector
	// DeadLetters counts the dead-letter store. Optional: without it
	// timq_dead_letters_held is not exported.
	DeadLetters DeadLetterCounter
	// Jobs counts jobs by state. Optional: without it timq_jobs is not
	// exported.
	Jobs JobCounter
	// Queues are reported even before asynq knows them (with zeros), in
	// addition to every queue asynq knows. Defaults to none.
	Queues []string
	// Interval is how often Run reads Redis. Defaults to
	// DefaultQueueStatsInterval.
	Interval time.Duration
	// Timeout bounds one read. Defaults to Interval.
	Timeout time.Duration
	// Logger receives a warning when a read fails. Defaults to slog.Default().
	Logger *slog.Logger
}

// QueueStats exports queue sizes and the dead-letter count as Prometheus
// gauges. It is a prometheus.Collector that serves the values of the last
// read: a scrape never touches Redis, however often it comes (asynq issue
// #1160: an Inspector read per scrape loads Redis with every scraper).
// Run performs the reads.
type QueueStats struct {
	cfg QueueStatsConfig

	mu      sync.Mutex
	queues  map[string]*asynq.QueueInfo // nil until the first successful read
	held    int64
	heldOK  bool
	jobs    map[string]int64 // nil without Jobs
	updated time.Time
	errors  float64

	descTasks, descLatency, descPaused, descHeld, descJobs, descUpdated, descErrors *prometheus.Desc
}

// NewQueueStats returns a QueueStats for cfg; register it on a registry and
// start Run.
func NewQueueStats(cfg QueueStatsConfig) (*QueueStats, error) {
	if cfg.Inspector == nil {
		return nil, errors.New("metrics: QueueStatsConfig.Inspector: must be set")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultQueueStatsInterval
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = cfg.Interval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &QueueStats{
		cfg: cfg,
		descTasks: prometheus.NewDesc("timq_queue_tasks",
			"Tasks in an asynq queue by state, as of the last read (see timq_queue_stats_updated_timestamp_seconds).",
			[]string{"queue", "state"}, nil),
		descLatency: prometheus.NewDesc("timq_queue_latency_seconds",
			"Age of the oldest pending task of a queue, as of the last read.", []string{"queue"}, nil),
		descPaused: prometheus.NewDesc("timq_queue_paused",
			"1 when the queue is paused (asynqmon or asynq's CLI can pause it), else 0.", []string{"queue"}, nil),
		descHeld: prometheus.NewDesc("timq_dead_letters_held",
			"Entries in timq's dead-letter store (timq dlq ls), as of the last read.", nil, nil),
		descJobs: prometheus.NewDesc("timq_jobs",
			"Jobs kept (running, or ended within their retention) by state, as of the last read.", []string{"state"}, nil),
		descUpdated: prometheus.NewDesc("timq_queue_stats_updated_timestamp_seconds",
			"Unix time at which queue sizes and the dead-letter count were last read successfully.", nil, nil),
		descErrors: prometheus.NewDesc("timq_queue_stats_errors_total",
			"Reads of queue sizes or the dead-letter count that failed; the gauges keep their last values.", nil, nil),
	}, nil
}

// States lists the values of timq_queue_tasks' state label.
var States = []string{"pending", "active", "scheduled", "retry", "archived", "completed", "aggregating"}

// Describe implements prometheus.Collector.
func (s *QueueStats) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{s.descTasks, s.descLatency, s.descPaused, s.descHeld, s.descJobs, s.descUpdated, s.descErrors} {
		ch <- d
	}
}

// Collect implements prometheus.Collector with the values of the last
// successful read. Before the first one it exports only the error count.
func (s *QueueStats) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(s.descErrors, prometheus.CounterValue, s.errors)
	if s.queues != nil {
		for name, q := range s.queues {
			counts := []int{q.Pending, q.Active, q.Scheduled, q.Retry, q.Archived, q.Completed, q.Aggregating}
			for i, state := range States {
				ch <- prometheus.MustNewConstMetric(s.descTasks, prometheus.GaugeValue, float64(counts[i]), name, state)
			}
			ch <- prometheus.MustNewConstMetric(s.descLatency, prometheus.GaugeValue, q.Latency.Seconds(), name)
			paused := 0.0
			if q.Paused {
				paused = 1
			}
			ch <- prometheus.MustNewConstMetric(s.descPaused, prometheus.GaugeValue, paused, name)
		}
		ch <- prometheus.MustNewConstMetric(s.descUpdated, prometheus.GaugeValue, float64(s.updated.UnixNano())/1e9)
	}
	if s.heldOK {
		ch <- prometheus.MustNewConstMetric(s.descHeld, prometheus.GaugeValue, float64(s.held))
	}
	if s.jobs != nil {
		for _, st := range JobStates {
			ch <- prometheus.MustNewConstMetric(s.descJobs, prometheus.GaugeValue, float64(s.jobs[st]), st)
		}
	}
}

// Refresh reads every queue's sizes and the dead-letter count once and
// keeps them for Collect. On failure the previous values stay, the error
// counter grows, and the error is returned.
func (s *QueueStats) Refresh(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	queues, err := s.readQueues()
	var held int64
	if err == nil && s.cfg.DeadLetters != nil {
		held, err = s.cfg.DeadLetters.Count(ctx)
	}
	var jobs map[string]int64
	if err == nil && s.cfg.Jobs != nil {
		jobs, err = s.cfg.Jobs.CountByState(ctx)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.errors++
		return err
	}
	s.queues, s.held, s.heldOK, s.jobs, s.updated = queues, held, s.cfg.DeadLetters != nil, jobs, time.Now()
	return nil
}

func (s *QueueStats) readQueues() (map[string]*asynq.QueueInfo, error) {
	names, err := s.cfg.Inspector.Queues()
	if err != nil {
		return nil, fmt.Errorf("list queues: %w", err)
	}
	out := make(map[string]*asynq.QueueInfo, len(names)+len(s.cfg.Queues))
	for _, name := range names {
		info, err := s.cfg.Inspector.GetQueueInfo(name)
		if err != nil {
			return nil, fmt.Errorf("queue %s: %w", name, err)
		}
		out[name] = info
	}
	// Queues asynq does not know yet hold no tasks.
	for _, name := range s.cfg.Queues {
		if _, ok := out[name]; !ok {
			out[name] = &asynq.QueueInfo{Queue: name}
		}
	}
	return out, nil
}

// Run reads at once, then every Interval, until ctx ends. A failed read is
// logged at warn, once per run of failures, and retried at the next tick.
func (s *QueueStats) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	failing := false
	for {
		if err := s.Refresh(ctx); err != nil && ctx.Err() == nil {
			if !failing {
				s.cfg.Logger.Warn("cannot read queue sizes for metrics", "error", err)
			}
			failing = true
		} else if err == nil {
			if failing {
				s.cfg.Logger.Info("reading queue sizes for metrics again")
			}
			failing = false
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
