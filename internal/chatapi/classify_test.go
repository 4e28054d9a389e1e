package chatapi

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestClassifyCode(t *testing.T) {
	t.Parallel()
	cases := []struct {
		code int
		want Class
	}{
		// Retried with backoff.
		{10002, ClassRetry}, {20004, ClassRetry}, {20005, ClassRetry}, {91000, ClassRetry},
		// Slow down.
		{60007, ClassThrottle}, {60011, ClassThrottle}, {60018, ClassThrottle}, {60019, ClassThrottle},
		// Sign again.
		{70001, ClassResign}, {70052, ClassResign},
		// Everything else is permanent: a sample of the documented codes.
		{10003, ClassPermanent}, {10004, ClassPermanent}, {10007, ClassPermanent}, {10010, ClassPermanent},
		{10015, ClassPermanent}, {10030, ClassPermanent}, {10031, ClassPermanent}, {10032, ClassPermanent},
		{10033, ClassPermanent}, {10041, ClassPermanent}, {20001, ClassPermanent}, {20002, ClassPermanent},
		{90001, ClassPermanent}, {90992, ClassPermanent}, {60008, ClassPermanent}, {60010, ClassPermanent},
		{70002, ClassPermanent}, {70003, ClassPermanent}, {70009, ClassPermanent}, {70050, ClassPermanent},
		{80002, ClassPermanent}, {-1, ClassPermanent},
	}
	for _, tc := range cases {
		if got := ClassifyCode(tc.code); got != tc.want {
			t.Errorf("ClassifyCode(%d) = %v, want %v", tc.code, got, tc.want)
		}
	}
	// Every row of the table is covered above.
	for _, set := range []map[int]struct{}{retryCodes, throttleCodes, resignCodes} {
		for code := range set {
			found := false
			for _, tc := range cases {
				found = found || tc.code == code
			}
			if !found {
				t.Errorf("code %d of the table has no test row", code)
			}
		}
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	apiErr := func(code int) error { return &Error{Endpoint: EndpointClear, Code: code, HTTPStatus: 200} }
	cases := []struct {
		name string
		err  error
		want Class
	}{
		{"nil", nil, ClassPermanent},
		{"API retry code", apiErr(10002), ClassRetry},
		{"API throttle code", apiErr(60011), ClassThrottle},
		{"API resign code", apiErr(70052), ClassResign},
		{"API permanent code", apiErr(10010), ClassPermanent},
		{"wrapped API code", fmt.Errorf("job 7: %w", apiErr(60019)), ClassThrottle},
		{"transport error", &Error{Endpoint: EndpointClear, Info: "refused", Err: errors.New("refused")}, ClassRetry},
		{"HTTP 502", &Error{Endpoint: EndpointClear, HTTPStatus: 502}, ClassRetry},
		{"canceled", context.Canceled, ClassCanceled},
		{"wrapped canceled", fmt.Errorf("chatapi: x: %w", context.Canceled), ClassCanceled},
		{"canceled inside an *Error", &Error{Err: context.Canceled}, ClassCanceled},
		{"deadline", context.DeadlineExceeded, ClassRetry},
		{"deadline inside an *Error", &Error{Err: context.DeadlineExceeded}, ClassRetry},
		{"other error", errors.New("nil request"), ClassPermanent},
	}
	for _, tc := range cases {
		if got := Classify(tc.err); got != tc.want {
			t.Errorf("%s: Classify = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestErrorMethods(t *testing.T) {
	t.Parallel()
	retry := &Error{Endpoint: EndpointModify, Code: 91000, Info: "internal"}
	throttle := &Error{Endpoint: EndpointModify, Code: 60007, Info: "rate"}
	if !retry.Retryable() || retry.Throttled() || throttle.Retryable() || !throttle.Throttled() {
		t.Error("Retryable/Throttled disagree with the table")
	}
	if got, want := retry.Error(), "chatapi: modify_group_msg: ErrorCode 91000: internal"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	inner := errors.New("boom")
	if !errors.Is(&Error{Err: inner}, inner) {
		t.Error("Unwrap does not reach Err")
	}
	for c, want := range map[Class]string{ClassPermanent: "permanent", ClassRetry: "retry", ClassThrottle: "throttle",
		ClassResign: "resign", ClassCanceled: "canceled", Class(99): "unknown"} {
		if c.String() != want {
			t.Errorf("Class(%d).String() = %q, want %q", int(c), c.String(), want)
		}
	}
}
