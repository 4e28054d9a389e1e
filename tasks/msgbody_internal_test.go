package tasks

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestValidateRaw(t *testing.T) {
	t.Parallel()
	video := `{"VideoUrl":"u","VideoUUID":"v","VideoSize":1,"VideoSecond":2,"VideoFormat":"mp4","VideoDownloadFlag":2,"ThumbUrl":"t","ThumbUUID":"tu","ThumbSize":3,"ThumbWidth":4,"ThumbHeight":5,"ThumbFormat":"jpg","ThumbDownloadFlag":2}`
	tests := []struct {
		name      string
		body      string
		wantCode  int
		wantField string
	}{
		{"text", `[{"MsgType":"TIMTextElem","MsgContent":{"Text":"hi"}}]`, 0, ""},
		{"text and custom", `[{"MsgType":"TIMTextElem","MsgContent":{"Text":"hi"}},{"MsgType":"TIMCustomElem","MsgContent":{"Data":"d"}}]`, 0, ""},
		{"location", `[{"MsgType":"TIMLocationElem","MsgContent":{"Desc":"x","Latitude":1.5,"Longitude":2}}]`, 0, ""},
		{"image", `[{"MsgType":"TIMImageElem","MsgContent":{"UUID":"u","ImageFormat":1,"ImageInfoArray":[{"Type":1,"Size":2,"Width":3,"Height":4,"URL":"x"}]}}]`, 0, ""},
		{"video", `[{"MsgType":"TIMVideoFileElem","MsgContent":` + video + `}]`, 0, ""},
		{"missing", ``, MsgBodyCodeEmpty, "MsgBody"},
		{"null", `null`, MsgBodyCodeEmpty, "MsgBody"},
		{"object", `{"MsgType":"TIMTextElem"}`, MsgBodyCodeNotArray, "MsgBody"},
		{"empty array", `[]`, MsgBodyCodeEmpty, "MsgBody"},
		{"array of strings", `["x"]`, MsgBodyCodeNotArray, "MsgBody"},
		{"unknown type", `[{"MsgType":"TIMNope","MsgContent":{}}]`, MsgBodyCodeBadElement, "MsgBody[0].MsgType"},
		{"text missing", `[{"MsgType":"TIMTextElem","MsgContent":{}}]`, MsgBodyCodeBadElement, "MsgBody[0].MsgContent.Text"},
		{"text wrong type", `[{"MsgType":"TIMTextElem","MsgContent":{"Text":5}}]`, MsgBodyCodeBadElement, "MsgBody[0].MsgContent.Text"},
		{"content not object", `[{"MsgType":"TIMTextElem","MsgContent":"hi"}]`, MsgBodyCodeBadElement, "MsgBody[0].MsgContent"},
		{"quoted number", `[{"MsgType":"TIMFaceElem","MsgContent":{"Index":"1","Data":"d"}}]`, MsgBodyCodeBadElement, "MsgBody[0].MsgContent.Index"},
		{"download flag", `[{"MsgType":"TIMSoundElem","MsgContent":{"Url":"u","UUID":"v","Download_Flag":1}}]`, MsgBodyCodeBadElement, "MsgBody[0].MsgContent.Download_Flag"},
		{"two customs", `[{"MsgType":"TIMCustomElem","MsgContent":{"Data":"a"}},{"MsgType":"TIMCustomElem","MsgContent":{"Data":"b"}}]`, MsgBodyCodeBadElement, "MsgBody[1].MsgType"},
		{"image info missing URL", `[{"MsgType":"TIMImageElem","MsgContent":{"UUID":"u","ImageFormat":1,"ImageInfoArray":[{"Type":1,"Size":2,"Width":3,"Height":4}]}}]`, MsgBodyCodeBadElement, "MsgBody[0].MsgContent.ImageInfoArray[0].URL"},
		{"too long", `[{"MsgType":"TIMTextElem","MsgContent":{"Text":"` + strings.Repeat("x", MaxMsgBodyBytes) + `"}}]`, MsgBodyCodeTooLong, "MsgBody"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := ValidateMsgBodyJSON(json.RawMessage(tt.body))
			if tt.wantCode == 0 {
				if err != nil {
					t.Fatalf("ValidateRaw: %v, want nil", err)
				}
				return
			}
			var be *MsgBodyError
			if !errors.As(err, &be) {
				t.Fatalf("ValidateRaw: %v, want *MsgBodyError", err)
			}
			if be.Code != tt.wantCode || be.Field != tt.wantField {
				t.Fatalf("got code %d field %q (%v), want code %d field %q", be.Code, be.Field, err, tt.wantCode, tt.wantField)
			}
		})
	}
}

func TestTextIsValid(t *testing.T) {
	t.Parallel()
	if err := ValidateMsgBody(TextBody(`quote " and newline` + "\n")); err != nil {
		t.Fatal(err)
	}
}

func FuzzValidateRaw(f *testing.F) {
	f.Add(`[{"MsgType":"TIMTextElem","MsgContent":{"Text":"hi"}}]`)
	f.Add(`[{"MsgType":"TIMImageElem","MsgContent":{"ImageInfoArray":[{}]}}]`)
	f.Add(`{}`)
	f.Fuzz(func(t *testing.T, s string) {
		err := ValidateMsgBodyJSON(json.RawMessage(s))
		var be *MsgBodyError
		if err != nil && !errors.As(err, &be) {
			t.Fatalf("error of type %T: %v", err, err)
		}
	})
}
