package tasks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ValidationError names the field of a payload that is wrong and why.
// Field uses Tencent's names and indexes, e.g. "MsgSeqList[3].MsgSeq".
type ValidationError struct {
	Field  string
	Reason string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Reason }

// Limits checked before a task is queued. They are looser than the API's own
// rules on purpose: a GroupId the API would refuse (10015) is the API's to
// refuse, and the refusal is dead-lettered with its code.
const (
	MaxGroupIDBytes         = 128
	MaxTopicIDBytes         = 256
	MaxCloudCustomDataBytes = 8 * 1024
	MaxReasonBytes          = 256
)

func invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

func checkID(field, v string, required bool, max int) error {
	switch {
	case v == "" && required:
		return invalid(field, "is required")
	case len(v) > max:
		return invalid(field, "is %d bytes, more than %d", len(v), max)
	case !utf8.ValidString(v):
		return invalid(field, "is not valid UTF-8")
	case strings.TrimSpace(v) != v:
		return invalid(field, "has leading or trailing white space")
	}
	if strings.IndexFunc(v, unicode.IsControl) >= 0 { // C0, DEL and C1 (U+0085 too)
		return invalid(field, "has a control character")
	}
	return nil
}

// strictUnmarshal decodes one JSON object, refusing unknown fields and
// trailing data, so a misspelt field ("MsgSeqs") is an error, not a no-op.
func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("is not a valid JSON object: %s", jsonReason(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("has data after the JSON object")
	}
	return nil
}

func jsonReason(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("field %s must be %s, not %s", te.Field, te.Type, te.Value)
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}
