package chatapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/timq/timq/tasks"

	"github.com/timq/timq/internal/chatapi"
)

func Example() {
	// A stand-in for Tencent: recalls message 100 and refuses 101.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, `{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0,
			"RecallRetList":[{"MsgSeq":100,"RetCode":0},{"MsgSeq":101,"RetCode":10031}]}`)
	}))
	defer srv.Close()

	c, err := chatapi.New(chatapi.Config{
		SDKAppID:  1400000001,
		SecretKey: "example-secret-key",
		BaseURL:   srv.URL, // or Region: "sgp"
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	resp, err := c.GroupMsgRecall(context.Background(), &chatapi.GroupMsgRecallRequest{
		GroupId:    "@TGS#2J4SZEAEL",
		MsgSeqList: []tasks.MsgSeqItem{{MsgSeq: 100}, {MsgSeq: 101}},
	})
	if err != nil {
		fmt.Println("call failed:", err, "class:", chatapi.Classify(err))
		return
	}
	fmt.Println("recalled:", resp.Succeeded())
	for _, f := range resp.Failed() {
		fmt.Printf("seq %d failed: code %d, %s\n", f.MsgSeq, f.RetCode, f.Class())
	}
	// Output:
	// recalled: [100]
	// seq 101 failed: code 10031, permanent
}

func ExampleClassify() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(chatapi.Envelope{ActionStatus: "FAIL", ErrorCode: 60007, ErrorInfo: "rate limited"})
	}))
	defer srv.Close()
	c, _ := chatapi.New(chatapi.Config{SDKAppID: 1400000001, SecretKey: "k3y", BaseURL: srv.URL})

	_, err := c.ClearGroupMsg(context.Background(), &chatapi.ClearGroupMsgRequest{GroupId: "@TGS#2J4SZEAEL"})
	var apiErr *chatapi.Error
	if errors.As(err, &apiErr) {
		fmt.Println(apiErr.Code, chatapi.Classify(err))
	}
	// Output: 60007 throttle
}
