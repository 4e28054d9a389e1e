package chatapi

import (
	"context"
	"errors"
)

// Class is what a caller should do with a failed call.
type Class int

const (
	// ClassPermanent failures will fail again: dead-letter them.
	ClassPermanent Class = iota
	// ClassRetry failures are transient: retry with backoff, using an attempt.
	ClassRetry
	// ClassThrottle answers mean "too fast": slow down and retry without
	// using an attempt.
	ClassThrottle
	// ClassResign means the UserSig was refused as expired or invalidated:
	// sign again and repeat. The client does this once by itself.
	ClassResign
	// ClassCanceled means the caller's context ended; the call's outcome is
	// unknown and the work should be handed back, not failed.
	ClassCanceled
)

func (c Class) String() string {
	switch c {
	case ClassPermanent:
		return "permanent"
	case ClassRetry:
		return "retry"
	case ClassThrottle:
		return "throttle"
	case ClassResign:
		return "resign"
	case ClassCanceled:
		return "canceled"
	}
	return "unknown"
}

// The decision table. Every ErrorCode not listed here is permanent.
// Failures with no code at all (transport errors, timeouts, HTTP 5xx, an
// answer that is not the JSON envelope) are ClassRetry: see Classify.
var (
	// retryCodes are the transient codes the API documents as "try again".
	retryCodes = map[int]struct{}{
		10002: {}, // internal error (clear, recall)
		20004: {}, // network error (modify)
		20005: {}, // internal error (modify)
		91000: {}, // internal error (modify)
	}
	// throttleCodes mean the caller exceeded a frequency limit.
	throttleCodes = map[int]struct{}{
		60007: {}, // REST API call rate over limit
		60011: {}, // SDKAppID-wide rate over limit
		60018: {}, // too frequent, try later
		60019: {}, // too frequent, try later
	}
	// resignCodes mean the UserSig must be made again.
	resignCodes = map[int]struct{}{
		70001: {}, // UserSig expired
		70052: {}, // UserSig invalidated
	}
)

// ClassifyCode returns the class of an API ErrorCode (or a recall RetCode).
// Code 0 is not a failure and is reported as ClassPermanent only if asked;
// callers check for 0 first.
func ClassifyCode(code int) Class {
	if _, ok := retryCodes[code]; ok {
		return ClassRetry
	}
	if _, ok := throttleCodes[code]; ok {
		return ClassThrottle
	}
	if _, ok := resignCodes[code]; ok {
		return ClassResign
	}
	return ClassPermanent
}

// Classify returns the class of any error a Client method returned.
// Context cancellation wins over everything; an *Error with a code is
// classified by ClassifyCode; an *Error without a code (transport failure,
// HTTP status other than 200, undecodable answer) is ClassRetry, as is a
// context deadline; any other error is ClassPermanent.
func Classify(err error) Class {
	if err == nil {
		return ClassPermanent
	}
	if errors.Is(err, context.Canceled) {
		return ClassCanceled
	}
	var apiErr *Error
	if errors.As(err, &apiErr) {
		if apiErr.Code != 0 {
			return ClassifyCode(apiErr.Code)
		}
		return ClassRetry
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return ClassRetry
	}
	return ClassPermanent
}
