// Package msgbody validates a Tencent Cloud Chat message body (MsgBody): an
// array of {"MsgType","MsgContent"} elements whose content fields depend on
// the element type.
//
// Producers use it to reject a bad modify task before it is queued, and the
// emulator uses it to answer the same ErrorCode Tencent would. Both therefore
// agree on what a valid body is.
package msgbody

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/timq/timq/internal/chatapi"
)

// MaxBytes is the largest encoded MsgBody accepted (Tencent documents about 8 KB).
const MaxBytes = 8 * 1024

// ErrorCodes answered for a bad body, as the API does.
const (
	CodeNotArray   = 90007 // MsgBody is not a JSON array
	CodeEmpty      = 90002 // MsgBody has no element or is missing
	CodeBadElement = 90010 // an element's type or content is wrong
	CodeTooLong    = 80002 // MsgBody is too long
)

// Error names the element and field that make a body invalid, and the
// ErrorCode the API would answer for it.
type Error struct {
	Index  int    // element index, -1 for the body as a whole
	Field  string // path of the bad field, e.g. "MsgBody[1].MsgContent.Text"
	Code   int    // ErrorCode the API answers
	Reason string
}

func (e *Error) Error() string { return e.Field + ": " + e.Reason }

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

// ValidateRaw checks an undecoded MsgBody: present, a JSON array, within
// MaxBytes, and then every element as Validate does.
func ValidateRaw(raw json.RawMessage) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return &Error{Index: -1, Field: "MsgBody", Code: CodeEmpty, Reason: "is required"}
	}
	if raw[0] != '[' {
		return &Error{Index: -1, Field: "MsgBody", Code: CodeNotArray, Reason: "must be a JSON array of elements"}
	}
	if len(raw) > MaxBytes {
		return &Error{Index: -1, Field: "MsgBody", Code: CodeTooLong, Reason: fmt.Sprintf("is %d bytes, more than the %d allowed", len(raw), MaxBytes)}
	}
	var body []chatapi.MsgElement
	if err := json.Unmarshal(raw, &body); err != nil {
		return &Error{Index: -1, Field: "MsgBody", Code: CodeNotArray, Reason: "is not an array of {MsgType, MsgContent} objects"}
	}
	return Validate(body)
}

// Validate checks a decoded MsgBody: at least one element, known MsgTypes,
// each element's required content fields present with the right JSON type,
// at most one TIMCustomElem, and the encoded size within MaxBytes.
func Validate(body []chatapi.MsgElement) error {
	if len(body) == 0 {
		return &Error{Index: -1, Field: "MsgBody", Code: CodeEmpty, Reason: "must hold at least one element"}
	}
	customs := 0
	size := 2
	for i, el := range body {
		path := fmt.Sprintf("MsgBody[%d]", i)
		fields, ok := elementFields[el.MsgType]
		if !ok {
			return &Error{Index: i, Field: path + ".MsgType", Code: CodeBadElement, Reason: fmt.Sprintf("unknown element type %q", el.MsgType)}
		}
		if el.MsgType == "TIMCustomElem" {
			if customs++; customs > 1 {
				return &Error{Index: i, Field: path + ".MsgType", Code: CodeBadElement, Reason: "a message holds at most one TIMCustomElem"}
			}
		}
		var content map[string]json.RawMessage
		if err := json.Unmarshal(el.MsgContent, &content); err != nil || content == nil {
			return &Error{Index: i, Field: path + ".MsgContent", Code: CodeBadElement, Reason: "must be a JSON object"}
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
	if size > MaxBytes {
		return &Error{Index: -1, Field: "MsgBody", Code: CodeTooLong, Reason: fmt.Sprintf("is about %d bytes, more than the %d allowed", size, MaxBytes)}
	}
	return nil
}

func checkImageInfo(i int, path string, raw json.RawMessage) error {
	var infos []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &infos); err != nil || len(infos) == 0 {
		return &Error{Index: i, Field: path, Code: CodeBadElement, Reason: "must be a non-empty array of image infos"}
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
				return &Error{Index: i, Field: path + "." + f.name, Code: CodeBadElement, Reason: "is required"}
			}
			continue
		}
		if err := checkKind(bytes.TrimSpace(raw), f); err != "" {
			return &Error{Index: i, Field: path + "." + f.name, Code: CodeBadElement, Reason: err}
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

// Text returns a body holding one TIMTextElem with the given text.
func Text(text string) []chatapi.MsgElement {
	content, _ := json.Marshal(struct{ Text string }{text})
	return []chatapi.MsgElement{{MsgType: "TIMTextElem", MsgContent: content}}
}
