// Package dashboard serves the asynqmon dashboard for timq's Redis with
// timq's payloads and results shown readably, a read-only view of timq's
// dead-letter store next to it, and authentication in front of both. `timq
// dash` serves it on its own; `timq worker --http-addr ADDR --dashboard`
// serves it under /dashboard/ on the worker's HTTP port.
//
// The text below is written for the README.
//
// # Dashboard
//
// `timq dash --addr 127.0.0.1:8080` serves asynqmon (queues, tasks, servers,
// Redis) for the Redis in TIMQ_REDIS_URL (or TIMQ_REDIS_CLUSTER_ADDRS).
// Payloads show a one-line summary above the indented JSON, e.g.
// "recall @TGS#2J4SZEAEL seq 10,11,12"; results show one too, e.g.
// "recalled 2, dead-lettered 1 of 3 messages (attempt 1)".
//
// asynqmon has no login of its own and can delete, run and archive tasks,
// so timq puts credentials in front of it:
//
//   - TIMQ_DASH_USER and TIMQ_DASH_PASSWORD: HTTP basic auth (the browser
//     asks for them);
//   - TIMQ_DASH_TOKEN: a bearer token ("Authorization: Bearer TOKEN"), for
//     scripts and for proxies that inject it;
//   - both may be set; either is then accepted.
//
// Credentials are compared in constant time. Without any, the dashboard
// starts only on a loopback address (127.0.0.1, ::1, localhost) and refuses
// any other with one line naming these settings. `--read-only` lets the
// dashboard look but not touch: every API request other than GET is refused.
// Requests that change something must come from the dashboard's own page
// (cross-site requests are refused), and the pages cannot be framed. Serve
// it behind TLS (a reverse proxy) when it leaves the host: basic auth sends
// the password with every request.
//
// `timq worker --http-addr ADDR --dashboard` serves the same dashboard under
// http://ADDR/dashboard/ next to the worker's /metrics, with the same
// credentials and the same rule for non-loopback addresses
// (`--dashboard-read-only` for read-only).
//
// # Dead letters: asynq's archive and `timq dlq`
//
// When the worker gives up on an operation (a permanent ErrorCode, an
// invalid payload, or retries exhausted) it does two things: it writes the
// operation to timq's dead-letter store, and it lets asynq archive the task
// with the error, code included. The two views differ:
//
//   - asynq's archive is the dashboard's "Archived" tab. It holds whole
//     tasks, and asynq trims it silently: at most 10,000 tasks per queue,
//     none older than 90 days. "Run" there re-runs the whole task as is;
//     "Delete" forgets it. Neither touches the dead-letter store.
//   - The dead-letter store is the record operators act on. It has no cap
//     and no expiry, holds one entry per operation (for a recall, one per
//     message that failed, so a requeue sends only those messages), and is
//     listed at /dlq/ on the dashboard (JSON at /dlq/api/entries) and by
//     `timq dlq ls`. Requeue with `timq dlq requeue ID` (a fresh task;
//     the entry is removed once it is enqueued) and drop with
//     `timq dlq purge ID`. The web view is read-only on purpose.
//
// So: use the archive to see what failed recently and why, the dead-letter
// store (timq dlq, or /dlq/) to decide what to do about it. After re-running
// a task from the archive, purge its dead-letter entry (or requeue from the
// store instead), or the store keeps reporting it. timq_dead_letters_held on
// /metrics is the store's size.
package dashboard
