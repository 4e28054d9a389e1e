package bulk

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/timq/timq/enqueue"
	"github.com/timq/timq/internal/jsonguard"
	"github.com/timq/timq/tasks"
)

// MaxLineBytes is the longest line accepted, enough for a recall of tens of
// thousands of messages. A longer line is rejected without being parsed.
const MaxLineBytes = 1 << 20

// Operation names, the values of a line's "op" field.
const (
	OpClear  = "clear"
	OpRecall = "recall"
	OpModify = "modify"
)

// LineError is a rejected line: its number (from 1) and what is wrong.
type LineError struct {
	Line int64
	Err  *tasks.ValidationError
}

// Error reads like "line 17: MsgSeqList[2].MsgSeq: must be at least 1".
func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }

// Unwrap returns the *tasks.ValidationError.
func (e *LineError) Unwrap() error { return e.Err }

// Skipped reports whether a line holds no operation: it is empty, white
// space only, or its first non-blank character is '#' (a comment).
func Skipped(line []byte) bool {
	t := bytes.TrimSpace(line)
	return len(t) == 0 || t[0] == '#'
}

// The line shapes: the operation name plus Tencent's request body.
type (
	clearLine struct {
		Op string `json:"op"`
		tasks.Clear
	}
	recallLine struct {
		Op string `json:"op"`
		tasks.Recall
	}
	modifyLine struct {
		Op string `json:"op"`
		tasks.Modify
	}
)

// ParseLine parses and validates one line: a JSON object holding "op"
// ("clear", "recall" or "modify") and the JSON body of the Tencent request,
// for example
//
//	{"op":"recall","GroupId":"@TGS#2J4SZEAEL","MsgSeqList":[{"MsgSeq":100},{"MsgSeq":101}]}
//
// It returns the payloads of the tasks the line becomes, in order: one, or
// for a recall of more than tasks.MaxRecallPerTask messages, several (see
// enqueue.Split). A skipped line (see Skipped) gives none and no error.
//
// Parsing is strict: an unknown field, a value of the wrong JSON type or
// data after the object is an error. Like encoding/json, field names match
// case-insensitively. Unlike encoding/json, which would quietly change such
// a line, ParseLine also rejects a line that:
//
//   - is not valid UTF-8 (a skipped line may be anything): Field is the
//     string value holding the bad bytes ("GroupId") with Reason "is not
//     valid UTF-8", or the object holding a bad key, or else "JSON" with a
//     Reason giving the position of the first bad byte;
//   - has an escaped lone UTF-16 surrogate such as \ud800 in a string;
//   - has an object, at any depth, that repeats a key: a key equal to an
//     earlier key of the same object once unescaped, ignoring case as
//     bytes.EqualFold does. Field is the object ("MsgSeqList[3]", or "JSON"
//     for the top level) and Reason reads `duplicate key "OP" (also "op")`.
//
// Every error is a *tasks.ValidationError whose Field names the bad field,
// or "JSON" when the line is not a JSON object.
func ParseLine(line []byte) ([]tasks.Payload, error) {
	if len(line) > MaxLineBytes {
		return nil, lineTooLong(int64(len(line)))
	}
	if Skipped(line) {
		return nil, nil
	}
	var head struct {
		Op *string `json:"op"`
	}
	// The head is read leniently (other fields ignored); strictDecode then
	// reads the whole line strictly. A type error still means the JSON
	// value is well formed, so jsonguard.Check can run on it first.
	headErr := json.NewDecoder(bytes.NewReader(line)).Decode(&head)
	var te *json.UnmarshalTypeError
	if headErr != nil && !errors.As(headErr, &te) {
		if ge := jsonguard.NotUTF8(line); ge != nil {
			return nil, validationError(ge)
		}
		return nil, jsonError(headErr)
	}
	if ge := jsonguard.Check(line); ge != nil {
		return nil, validationError(ge)
	}
	if headErr != nil {
		return nil, jsonError(headErr)
	}
	var (
		p   tasks.Payload
		err error
	)
	switch op := head.Op; {
	case op == nil:
		return nil, &tasks.ValidationError{Field: "op", Reason: `is required: "clear", "recall" or "modify"`}
	case *op == OpClear:
		var v clearLine
		err, p = strictDecode(line, &v), v.Clear
	case *op == OpRecall:
		var v recallLine
		err, p = strictDecode(line, &v), v.Recall
	case *op == OpModify:
		var v modifyLine
		err, p = strictDecode(line, &v), v.Modify
	default:
		return nil, &tasks.ValidationError{Field: "op", Reason: fmt.Sprintf(`must be "clear", "recall" or "modify", not %q`, *op)}
	}
	if err != nil {
		return nil, err
	}
	return split(p)
}

// ParseBody reads one operation's request body (a bulk line without "op")
// as strictly as ParseLine, for op "clear", "recall" or "modify", and
// splits it into tasks like ParseLine. Errors are *tasks.ValidationError.
func ParseBody(op string, body []byte) ([]tasks.Payload, error) {
	var (
		p   tasks.Payload
		err error
	)
	switch op {
	case OpClear:
		var v tasks.Clear
		err, p = strictDecode(body, &v), v
	case OpRecall:
		var v tasks.Recall
		err, p = strictDecode(body, &v), v
	case OpModify:
		var v tasks.Modify
		err, p = strictDecode(body, &v), v
	default:
		return nil, &tasks.ValidationError{Field: "op", Reason: fmt.Sprintf(`must be "clear", "recall" or "modify", not %q`, op)}
	}
	if ge := jsonguard.NotUTF8(body); ge != nil {
		return nil, validationError(ge)
	}
	var ve *tasks.ValidationError
	if err != nil && !(errors.As(err, &ve) && ve.Field != "JSON") {
		return nil, err // not well-formed JSON: nothing more to check
	}
	if ge := jsonguard.Check(body); ge != nil {
		return nil, validationError(ge)
	}
	if err != nil {
		return nil, err
	}
	return split(p)
}

// split is enqueue.Split with its error as a *tasks.ValidationError.
func split(p tasks.Payload) ([]tasks.Payload, error) {
	parts, err := enqueue.Split(p)
	if err != nil {
		var ve *tasks.ValidationError
		if errors.As(err, &ve) {
			return nil, ve
		}
		return nil, &tasks.ValidationError{Field: "JSON", Reason: err.Error()}
	}
	return parts, nil
}

// validationError is e as the *tasks.ValidationError ParseLine returns.
func validationError(e *jsonguard.Error) *tasks.ValidationError {
	return &tasks.ValidationError{Field: e.Field, Reason: e.Reason}
}

func lineTooLong(n int64) *tasks.ValidationError {
	return &tasks.ValidationError{Field: "JSON", Reason: fmt.Sprintf("the line is %d bytes, more than the %d allowed", n, MaxLineBytes)}
}

// strictDecode decodes one JSON object into v, refusing unknown fields and
// trailing data.
func strictDecode(line []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &tasks.ValidationError{Field: "JSON", Reason: "has data after the JSON object"}
	}
	return nil
}

// jsonError turns an encoding/json error into a ValidationError naming the
// field when there is one.
func jsonError(err error) *tasks.ValidationError {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field == "" {
			return &tasks.ValidationError{Field: "JSON", Reason: fmt.Sprintf("must be an object, not %s", te.Value)}
		}
		// Fields of the embedded payload come as "Clear.MsgSeq".
		field := te.Field
		for _, embedded := range []string{"Clear.", "Recall.", "Modify."} {
			field = strings.TrimPrefix(field, embedded)
		}
		return &tasks.ValidationError{Field: field, Reason: fmt.Sprintf("must be %s, not %s", te.Type, te.Value)}
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if name, ok := strings.CutPrefix(msg, "unknown field "); ok {
		return &tasks.ValidationError{Field: strings.Trim(name, `"`), Reason: "is not a field of this operation"}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || msg == "unexpected end of JSON input" {
		msg = "is not a complete JSON object"
	}
	return &tasks.ValidationError{Field: "JSON", Reason: msg}
}

// lineReader reads lines of any length, keeping at most MaxLineBytes of
// each; the rest of a longer line is read past and only counted.
type lineReader struct {
	r    *bufio.Reader
	buf  []byte
	line int64
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, 256*1024)}
}

// next returns the next line without its "\n" or "\r\n" (and, on line 1,
// without a UTF-8 byte order mark), its number from 1, and its length. A
// line longer than MaxLineBytes comes back cut short, with its full length.
// It returns io.EOF after the last line.
func (lr *lineReader) next() (line []byte, num int64, size int64, err error) {
	const keep = MaxLineBytes + 2 // a longest line and its "\r\n"
	lr.buf = lr.buf[:0]
	var tail []byte // the last bytes read, for the line end of a cut line
	for {
		chunk, err := lr.r.ReadSlice('\n')
		size += int64(len(chunk))
		tail = append(tail, chunk[max(0, len(chunk)-2):]...)
		tail = tail[max(0, len(tail)-2):]
		if room := keep - len(lr.buf); room > 0 {
			lr.buf = append(lr.buf, chunk[:min(len(chunk), room)]...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, 0, 0, err
		}
		if err != nil && size == 0 {
			return nil, 0, 0, io.EOF
		}
		break
	}
	lr.line++
	b := lr.buf
	if size > int64(len(b)) {
		if bytes.HasSuffix(tail, []byte("\n")) {
			size--
			if bytes.HasSuffix(tail, []byte("\r\n")) {
				size--
			}
		}
		return b, lr.line, size, nil
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	if lr.line == 1 {
		b = bytes.TrimPrefix(b, []byte("\xEF\xBB\xBF"))
	}
	return b, lr.line, int64(len(b)), nil
}
