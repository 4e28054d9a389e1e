package chatapi

import "fmt"

// Error is every failure a Client method returns, except a canceled context
// (an error wrapping context.Canceled) and misuse such as a nil request.
//
// An API error has a non-zero Code (the answer's ErrorCode) and Info (its
// ErrorInfo). A transport failure has Code 0 and Err set: the connection was
// refused or reset, the call timed out, the HTTP status was not 200, or the
// answer was not the JSON envelope. Error strings never hold the UserSig or
// the secret key.
type Error struct {
	Endpoint   Endpoint
	Code       int    // ErrorCode; 0 for a transport failure
	Info       string // ErrorInfo, or a description of the transport failure
	HTTPStatus int    // 0 when no answer arrived
	RequestID  string // RequestId when the answer had one
	Err        error  // underlying transport error, already redacted; nil for API errors
}

func (e *Error) Error() string {
	if e.Code != 0 {
		return fmt.Sprintf("chatapi: %s: ErrorCode %d: %s", e.Endpoint.Short(), e.Code, e.Info)
	}
	if e.HTTPStatus != 0 && e.HTTPStatus != 200 {
		return fmt.Sprintf("chatapi: %s: HTTP %d: %s", e.Endpoint.Short(), e.HTTPStatus, e.Info)
	}
	return fmt.Sprintf("chatapi: %s: %s", e.Endpoint.Short(), e.Info)
}

// Unwrap returns the underlying transport error, if any.
func (e *Error) Unwrap() error { return e.Err }

// Class reports what a caller should do with this failure (see Classify).
func (e *Error) Class() Class { return Classify(e) }

// Retryable reports whether the failure is transient and worth an attempt.
func (e *Error) Retryable() bool { return e.Class() == ClassRetry }

// Throttled reports whether the API asked the caller to slow down.
func (e *Error) Throttled() bool { return e.Class() == ClassThrottle }
