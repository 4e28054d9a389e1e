package sim

import "fmt"

// ErrorCodes the emulator answers. Where Tencent's pages are silent the
// choice is documented in the package comment.
const (
	codeOK = 0

	// Per-API codes (group service).
	CodeInternal          = 10002 // internal error, try again (only ever injected)
	CodeBadCommand        = 10003 // unknown command under a known service
	CodeBadParam          = 10004 // missing or invalid parameter
	CodeNoPermission      = 10007 // operation not allowed, also for an unsupported group type
	CodeGroupMissing      = 10010 // group (or topic) does not exist
	CodeBadGroupID        = 10015 // malformed group ID
	CodeMsgMissing        = 10030 // message does not exist (or is cleared / recalled where that matters)
	CodeModifyBadRequest  = 20001 // modify: neither MsgBody nor CloudCustomData, or MsgSeq missing
	CodeModifyJSON        = 90001 // modify: body is not a JSON object or has a mistyped field
	CodePublicBadURL      = 60002 // bad path, method, contenttype or random
	CodePublicNotJSON     = 60003 // body is not a JSON object
	CodePublicBadIdent    = 60004 // identifier missing
	CodePublicBadAppID    = 60006 // sdkappid is not ours or not a number
	CodePublicRateLimited = 60007 // over Config.Rate in the sliding window
	CodePublicNotAdmin    = 60010 // identifier is not an app admin
	CodePublicNoAppID     = 60012 // sdkappid missing
)

// Error is a refused seeding or inspection call (CreateGroup, CreateTopic,
// AddMessages). Code is the ErrorCode the REST API would answer for the same
// mistake.
type Error struct {
	Code int
	Info string
}

func (e *Error) Error() string { return fmt.Sprintf("sim: %s (ErrorCode %d)", e.Info, e.Code) }

func errorf(code int, format string, args ...any) *Error {
	return &Error{Code: code, Info: fmt.Sprintf(format, args...)}
}
