// Package redishook holds what go-redis hooks that only intercept single
// commands share.
package redishook

import "github.com/redis/go-redis/v9"

// ProcessOnly, embedded in a go-redis hook, passes dials and pipelines
// through unchanged, so the hook need only implement ProcessHook.
type ProcessOnly struct{}

// DialHook implements redis.Hook; it changes nothing.
func (ProcessOnly) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessPipelineHook implements redis.Hook; it changes nothing.
func (ProcessOnly) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
