// Package chatapi is timq's client for the Tencent Cloud Chat (IM) REST API.
//
// It owns everything about the wire: the request line (sdkappid, identifier,
// usersig, random, contenttype), UserSig signing and renewal, the JSON
// envelope ({"ActionStatus","ErrorCode","ErrorInfo"}), and the single error
// type, *Error, whose Class says what a caller should do with a failure.
//
// Secrets never leave this package in printable form: the secret key is held
// only to sign, and every URL that reaches an error string has its usersig
// query value redacted.
package chatapi
