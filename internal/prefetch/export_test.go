package prefetch

// AsynqDequeueSource is asynq's dequeue script, for tests that send it as
// asynq does.
const AsynqDequeueSource = asynqDequeue
