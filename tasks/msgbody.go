package tasks

// This file validates a Tencent Cloud Chat message body (MsgBody): an
// array of {"MsgType","MsgContent"} elements whose content fields depend on
// the element type. Producers use it to reject a bad modify task before it
// is queued, and the emulator uses it to answer the same ErrorCode Tencent
// would, so both agree on what a valid body is.

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// MaxMsgBodyBytes is the largest encoded MsgBody accepted (Tencent documents about 8 KB).
const MaxMsgBodyBytes = 8 * 1024

// ErrorCodes answered for a bad body, as the API does.
const (
	MsgBodyCodeNotArray   = 90007 // MsgBody is not a JSON array
	MsgBodyCodeEmpty      = 90002 // MsgBody has no element or is missing
	MsgBodyCodeBadElement = 90010 // an element's type or content is wrong
	MsgBodyCodeTooLong    = 80002 // MsgBody is too long
)

// MsgBodyError names the element and field that make a body invalid, and the
// ErrorCode the API would answer for it.
type MsgBodyError struct {
	Index  int    // element index, -1 for the body as a whole
	Field  string // path of the bad field, e.g. "MsgBody[1].MsgContent.Text"
	Code   int    // ErrorCode the API answers
	Reason string
}

func (e *MsgBodyError) Error() string { return e.Field + ": " + e.Reason }

type kind int

const (
	kString kind = iota
	kNumber
	kArray
)

type field struct {
	name     string
	kind     kind
	required bool
	fixed    int64 // when non-zero, the number must equal it (Download_Flag = 2)
}

func req(name string, k kind) field    { return field{name: name, kind: k, required: true} }
func opt(name string, k kind) field    { return field{name: name, kind: k} }
func flag2(name string) field          { return field{name: name, kind: kNumber, required: true, fixed: 2} }
func elem(fields ...field) []field     { return fields }
func reqS(names ...string) (f []field) { return reqs(kString, names...) }
func reqN(names ...string) (f []field) { return reqs(kNumber, names...) }
func reqs(k kind, names ...string) (f []field) {
	for _, n := range names {
		f = append(f, req(n, k))
	}
	return f
}

// elementFields holds, per MsgType, the content fields Tencent requires.
var elementFields = map[string][]field{
	"TIMTextElem":     elem(req("Text", kString)),
	"TIMLocationElem": elem(req("Desc", kString), req("Latitude", kNumber), req("Longitude", kNumber)),
	"TIMFaceElem":     elem(req("Index", kNumber), req("Data", kString)),
	"TIMCustomElem":   elem(req("Data", kString), opt("Desc", kString), opt("Ext", kString), opt("Sound", kString)),
	"TIMSoundElem":    append(reqS("Url", "UUID"), flag2("Download_Flag"), opt("Size", kNumber), opt("Second", kNumber)),
	"TIMImageElem":    elem(req("UUID", kString), req("ImageFormat", kNumber), req("ImageInfoArray", kArray)),
	"TIMFileElem":     append(append(reqS("Url", "UUID", "FileName"), reqN("FileSize")...), flag2("Download_Flag")),
	"TIMVideoFileElem": append(append(append(
		reqS("VideoUrl", "VideoUUID", "VideoFormat", "ThumbUrl", "ThumbUUID", "ThumbFormat"),
		reqN("VideoSize", "VideoSecond", "ThumbSize", "ThumbWidth", "ThumbHeight")...),
		flag2("VideoDownloadFlag")), flag2("ThumbDownloadFlag")),
}

var imageInfoFields = reqN("Type", "Size", "Width", "Height")

// ValidateMsgBodyJSON checks an undecoded MsgBody: present, a JSON array, within
// MaxMsgBodyBytes, and then every element as Validate does.
func ValidateMsgBodyJSON(raw json.RawMessage) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return &MsgBodyError{Index: -1, Field: "MsgBody", Code: MsgBodyCodeEmpty, Reason: "is required"}
	}
	if raw[0] != '[' {
		return &MsgBodyError{Index: -1, Field: "MsgBody", Code: MsgBodyCodeNotArray, Reason: "must be a JSON array of elements"}
	}
	if len(raw) > MaxMsgBodyBytes {
		return &MsgBodyError{Index: -1, Field: "MsgBody", Code: MsgBodyCodeTooLong, Reason: fmt.Sprintf("is %d bytes, more than the %d allowed", len(raw), MaxMsgBodyBytes)}
	}
	var body []MsgElement
	if err := json.Unmarshal(raw, &body); err != nil {
		return &MsgBodyError{Index: -1, Field: "MsgBody", Code: MsgBodyCodeNotArray, Reason: "is not an array of {MsgType, MsgContent} objects"}
	}
	return ValidateMsgBody(body)
}

// ValidateMsgBody checks a decoded MsgBody: at least one element, known MsgTypes,
// each element's required content fields present with the right JSON type,
// at most one TIMCustomElem, and the encoded size within MaxMsgBodyBytes.
func ValidateMsgBody(body []MsgElement) error {
	if len(body) == 0 {
		return &MsgBodyError{Index: -1, Field: "MsgBody", Code: MsgBodyCodeEmpty, Reason: "must hold at least one element"}
	}
	customs := 0
	size := 2
	for i, el := range body {
		path := fmt.Sprintf("MsgBody[%d]", i)
		fields, ok := elementFields[el.MsgType]
		if !ok {
			return &MsgBodyError{Index: i, Field: path + ".MsgType", Code: MsgBodyCodeBadElement, Reason: fmt.Sprintf("unknown element type %q", el.MsgType)}
		}
		if el.MsgType == "TIMCustomElem" {
			if customs++; customs > 1 {
				return &MsgBodyError{Index: i, Field: path + ".MsgType", Code: MsgBodyCodeBadElement, Reason: "a message holds at most one TIMCustomElem"}
			}
		}
		var content map[string]json.RawMessage
		if err := json.Unmarshal(el.MsgContent, &content); err != nil || content == nil {
			return &MsgBodyError{Index: i, Field: path + ".MsgContent", Code: MsgBodyCodeBadElement, Reason: "must be a JSON object"}
		}
		if err := checkFields(i, path+".MsgContent", content, fields); err != nil {
			return err
		}
		if el.MsgType == "TIMImageElem" {
			if err := checkImageInfo(i, path+".MsgContent.ImageInfoArray", content["ImageInfoArray"]); err != nil {
				return err
			}
		}
		size += len(el.MsgType) + len(el.MsgContent) + 30
	}
	if size > MaxMsgBodyBytes {
		return &MsgBodyError{Index: -1, Field: "MsgBody", Code: MsgBodyCodeTooLong, Reason: fmt.Sprintf("is about %d bytes, more than the %d allowed", size, MaxMsgBodyBytes)}
	}
	return nil
}

func checkImageInfo(i int, path string, raw json.RawMessage) error {
	var infos []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &infos); err != nil || len(infos) == 0 {
		return &MsgBodyError{Index: i, Field: path, Code: MsgBodyCodeBadElement, Reason: "must be a non-empty array of image infos"}
	}
	for j, info := range infos {
		if err := checkFields(i, fmt.Sprintf("%s[%d]", path, j), info, imageInfoFields); err != nil {
			return err
		}
		if err := checkFields(i, fmt.Sprintf("%s[%d]", path, j), info, []field{req("URL", kString)}); err != nil {
			return err
		}
	}
	return nil
}

func checkFields(i int, path string, content map[string]json.RawMessage, fields []field) error {
	for _, f := range fields {
		raw, ok := content[f.name]
		if !ok || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			if f.required {
				return &MsgBodyError{Index: i, Field: path + "." + f.name, Code: MsgBodyCodeBadElement, Reason: "is required"}
			}
			continue
		}
		if err := checkKind(bytes.TrimSpace(raw), f); err != "" {
			return &MsgBodyError{Index: i, Field: path + "." + f.name, Code: MsgBodyCodeBadElement, Reason: err}
		}
	}
	return nil
}

func checkKind(raw json.RawMessage, f field) string {
	switch f.kind {
	case kString:
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "must be a string"
		}
	case kNumber:
		// json.Number also accepts a quoted number; the API does not.
		var n json.Number
		if raw[0] == '"' || json.Unmarshal(raw, &n) != nil {
			return "must be a number"
		}
		if f.fixed != 0 {
			if v, err := n.Int64(); err != nil || v != f.fixed {
				return fmt.Sprintf("must be %d", f.fixed)
			}
		}
	case kArray:
		var a []json.RawMessage
		if json.Unmarshal(raw, &a) != nil {
			return "must be an array"
		}
	}
	return ""
}

// TextElem returns a TIMTextElem element holding text.
func TextElem(text string) MsgElement {
	content, _ := json.Marshal(struct{ Text string }{text}) // a string always marshals
	return MsgElement{MsgType: "TIMTextElem", MsgContent: content}
}

// TextBody returns a message body of one TIMTextElem holding text, the
// usual MsgBody of a Modify.
func TextBody(text string) []MsgElement { return []MsgElement{TextElem(text)} }
