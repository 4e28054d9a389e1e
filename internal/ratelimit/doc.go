// Package ratelimit holds each API endpoint to its call budget.
//
// A Pacer spaces one process's calls with a token bucket from
// golang.org/x/time/rate. Its rate is a little under the API's limit and its
// burst is 1, because a token bucket of rate r and burst b lets b + r calls
// into one second: with the API's limit of 200 calls in any sliding second,
// r = 197 and b = 1 keep the count at 198 even when a few calls bunch up on
// their way to the server.
//
// # The shared budget
//
// The API's limit is per app and endpoint, not per process: three workers
// with a Pacer each would send three times the limit. A Shared limiter
// holds one budget across every process that uses the same Redis key.
//
// Redis keeps one number per app and endpoint, in the key
// timq:budget:{SDKAPPID:ENDPOINT}: the next free slot on the Redis clock
// (a theoretical arrival time, TAT, as in GCRA). A process asks a Lua
// script for k slots at once (k = the number of its goroutines waiting,
// at most WithBatch, DefaultSharedBatch); the script reads TIME, takes max(TAT, now + the
// process's round trip), moved up to a whole number of intervals on the
// Redis clock, as the first slot, advances TAT by k intervals
// (interval = 1/(limit*Headroom), rounded up to a whole microsecond: 5077
// µs for 200/s) and returns the first slot. The process turns Redis time
// into its own monotonic time (the reply's Redis "now" is taken to be the
// middle of the round trip) and hands its k slots to its waiters, one
// interval apart. Every slot is handed out once, so whatever the number of
// processes any sliding second holds at most floor(1 s / interval) + 1
// slots: 197 for a limit of 200.
//
// Every budget with the same interval shares that grid, so a process that
// holds the same instant for several endpoints (each of its three
// endpoints' budgets) usually sends those calls on one wake-up of its
// thread rather than one each; on a 2-core VM a wake-up that does work
// costs about as much as the work. Usually, because each limiter maps the
// Redis clock onto its own with its own estimate: the estimates of one
// process differ by microseconds, well within the runtime timers'
// millisecond resolution, but on Redis Cluster the budgets may live on
// nodes whose clocks differ by more. Moving a slot up to the grid costs at
// most one interval when the budget was idle or paused, and never gives a
// slot twice: TAT only moves forward.
//
// One goroutine per limiter talks to Redis, and only while goroutines
// wait. It asks for a batch when its slots run out within a third of the
// horizon (WithHorizon, 300 ms) or a full batch of goroutines waits, and
// never while its slots reach a horizon ahead: so a process holds at most
// about a horizon of the budget, an idle grant costs one command and a busy
// process about one command per batch (0.2 per call with four processes in
// the tests), never more than the two per API call allowed. A goroutine
// that waits for one slot at a time and comes straight back for the next
// gets reservations of 1, 2, 4 and then a batch, so it
// too costs about one command per batch; a late return or a wasted slot
// starts it again at one (WithoutRamp turns this off, for limiters whose
// callers are many goroutines at once). The script
// refuses to start a reservation more than four horizons ahead, answering
// "come back at T" (when a full batch fits), and the process sleeps once
// until T rather than polling.
//
// A process that crashes or leaves wastes the slots it reserved, at most a
// horizon's worth plus a batch; there is no per-process state in Redis to
// expire, so a new process gets slots on its first request and its fair
// share within a horizon. The key expires a second after its TAT passes.
//
// Slots go through the process's own x/time/rate token bucket (rate
// limit*Headroom, burst 1), in time order, which keeps the process's calls
// an interval apart when the Redis-to-local clock estimate moves between
// replies. The estimate moves only on replies about as fast as the fastest
// recent ones, so a reply the process read late does not shift slots. A
// goroutine that wakes more than one interval after its slot (a stalled
// process) does not call late, which could bunch calls; it asks for a new
// slot. So every granted call starts in [slot, slot+interval] of local
// time, and any sliding second holds at most floor((1 s + interval)/
// interval) + 1 = 198 grants for a limit of 200. Whatever delays a call
// between its grant and the server (the process kept off the CPU, a new
// connection's handshake, the network, the spread of the processes' clock
// estimates) is absorbed by the headroom (Headroom): two more calls per
// second, about 10 ms of lateness, before a sliding second could reach 201.
//
// # Why not redis_rate, or leased tokens
//
// github.com/go-redis/redis_rate runs the same GCRA on the Redis clock, but
// it answers allow or deny for each call: a denied caller sleeps for
// RetryAfter and asks again, so with many goroutines in several processes
// every free slot is raced for by all of them (a polling storm, several
// commands per call), and a burst large enough to avoid that lets burst +
// rate calls into one second. Reserving slots instead of asking for
// permission turns a denial into a schedule: one command buys up to
// WithBatch calls at known instants. Leasing tokens in batches (take 20
// tokens, spend them when you like) is cheap too, but leased tokens carry
// no time: a process can spend its whole lease at once, so the limit only
// holds per lease period, not per sliding second, and a crashed holder's
// lease must expire before anyone else may use it. Slots are both the
// lease and the schedule: a crashed holder strands only slots whose time
// passes anyway.
//
// # Throttle answers, failover, Redis down
//
// Backoff(d) pushes the shared TAT to at least now+d, so every process's
// next reservation starts after the pause; slots this process already
// holds before then are dropped. Other processes still use the slots they
// hold, at most a horizon (300 ms) of them.
//
// When Redis does not answer, waiting goroutines keep waiting (the limiter
// retries every 100 ms doubling to 2 s) and the limiter logs once; it never
// grants a call it could not account for, unless WithFallbackRate sets a
// local rate to use meanwhile (for instance limit/replicas). asynq needs
// the same Redis to hand out and complete tasks, so an outage stalls the
// worker either way.
//
// A Sentinel failover can lose the key's last writes (replication is
// asynchronous), and a new primary's clock may be behind the old one's: in
// both cases slots already handed out could be handed out again. So after
// any error the first reservation pushes TAT a horizon ahead, and a process
// whose reservation starts before the end of the slots it already received
// (the budget went back in time, even without an error) drops it and
// pushes TAT past those slots plus a horizon. A few hundred milliseconds of
// budget per failover buy not calling twice in the same slot.
//
// On Redis Cluster the budget is one key, so the script runs on the node
// that owns it; go-redis sends EVALSHA there and falls back to EVAL on a
// node that does not have the script yet.
package ratelimit
