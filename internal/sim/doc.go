// Package sim is a strict emulator of the Tencent Cloud Chat REST API, for
// the endpoints timq calls: clear_group_msg, group_msg_recall and
// modify_group_msg, plus send_group_msg and group_msg_get_simple to seed and
// inspect state. Every test and benchmark runs against it on loopback; `timq
// sim` serves it.
//
// # Request checks
//
// A call to /v4/{service}/{command} is checked in this order; the first
// failure is the answer (HTTP 200, ActionStatus FAIL):
//
//	path not /v4/{service}/{command}, or unknown service    60002
//	known service, command not emulated                     10003
//	method not POST                                         60002
//	sdkappid missing                                        60012
//	sdkappid not a number or not Config.SDKAppID            60006
//	contenttype not exactly "json"                          60002
//	identifier missing                                      60004
//	identifier not in Config.Admins                         60010
//	usersig (package usersig, in this order)                70002 empty, 70003 unparsable,
//	                                                        70013 identifier, 70014 sdkappid,
//	                                                        70009 wrong key, 70001 expired
//	random missing or not a uint32                          60002
//	body not one JSON object (or over 1 MiB)                60003 (90001 for modify_group_msg)
//	over Config.Rate calls in the sliding Window            60007
//
// Then a fault may be injected (see Faults), and then the endpoint's own
// checks run. Calls to unknown paths are counted in Stats.OtherCalls only;
// every call to an emulated endpoint, refused or not, is counted in its
// EndpointStats. The rate limiter counts admitted calls only: a call refused
// with 60007 (or earlier) does not use up the window. Each endpoint has its
// own window; the SDKAppID-wide limit (60011) is not emulated.
//
// # Endpoint behaviour and the codes chosen where Tencent's pages are silent
//
// Common to all: a missing GroupId or a mistyped field answers 10004 (20001
// and 90001 for modify_group_msg); a malformed group ID 10015 (see
// CheckGroupID); a missing group 10010, unless Config.AutoCreate; a TopicId
// on a group that is not a Community, or one that is not
// "{GroupId}@TOPIC#{name}", 10004; a missing topic 10010.
//
//   - clear_group_msg: Community groups answer 10007 (the page lists 10007
//     "insufficient operation permissions" and Community as unsupported).
//     Clearing moves a watermark up to min(MsgSeq, last seq), or to the last
//     seq when MsgSeq is absent; it never goes down and never covers seqs not
//     yet sent.
//   - group_msg_recall: MsgSeqList must hold 1..10 entries (10004). The call
//     is OK and each entry gets a RetCode: 0 recalled, 0 again for a message
//     already recalled (our assumption: Tencent does not document it; it
//     makes retries idempotent), 10030 for a seq that does not exist or is
//     cleared. All group types support recall.
//   - modify_group_msg: AVChatRoom answers 10007. MsgBody is checked with
//     tasks.ValidateMsgBody first (90007 not an array, 90002 empty, 90010 bad
//     element, 80002 too long); then 90001 for a mistyped field; 20001 when
//     GroupId or MsgSeq is missing or neither MsgBody nor CloudCustomData is
//     given; 10030 when the message does not exist, is cleared or is
//     recalled. OK answers ErrorInfo "succeed".
//   - send_group_msg: MsgBody is checked as for modify; the message gets the
//     thread's next seq (seqs rise from 1 per group and per topic) and
//     From_Account defaults to the caller.
//   - group_msg_get_simple: ReqMsgNumber 1..20 (10004). Newest first from
//     ReqMsgSeq (or the newest). Cleared messages keep their content and
//     have IsPlaceMsg 1; recalled ones are left out unless WithRecalledMsg is
//     1, then listed with IsPlaceMsg 2 and no content. IsFinished is 1 when
//     no older message would be listed.
//
// # Faults and determinism
//
// Each endpoint has two math/rand/v2 PCG sources seeded from Config.Seed and
// the endpoint name: one draws exactly one fault outcome per admitted call,
// the other one jitter per call. The same seed and the same sequence of
// calls give the same answers. An injected code or 502 leaves state
// untouched; a hang waits HangFor (or until the client goes away or Close)
// and then drops the connection without an answer.
//
// # Admin API
//
// /_sim/ serves JSON for tests and benchmarks without authentication; see
// the Server's routes in admin.go. It never serves the secret key.
package sim
