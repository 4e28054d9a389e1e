package tasks_test

import (
	"errors"
	"fmt"

	"github.com/timq/timq/tasks"
)

func ExampleNewTask() {
	task, err := tasks.NewTask(tasks.Recall{
		GroupId:    "@TGS#2J4SZEAEL",
		MsgSeqList: []tasks.MsgSeqItem{{MsgSeq: 100}, {MsgSeq: 101}},
		Reason:     "spam",
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(task.Type())
	fmt.Println(string(task.Payload()))
	// Output:
	// timq:recall
	// {"GroupId":"@TGS#2J4SZEAEL","MsgSeqList":[{"MsgSeq":100},{"MsgSeq":101}],"Reason":"spam"}
}

func ExampleParse() {
	_, err := tasks.Parse(tasks.TypeRecall, []byte(`{"GroupId":"@TGS#2J4SZEAEL","MsgSeqList":[{"MsgSeq":7},{"MsgSeq":0}]}`))
	var ve *tasks.ValidationError
	if errors.As(err, &ve) {
		fmt.Println("field:", ve.Field)
		fmt.Println("reason:", ve.Reason)
	}
	_, err = tasks.Parse(tasks.TypeClear, []byte(`{"GroupId":"@TGS#2J4SZEAEL","MsgSeqs":7}`))
	fmt.Println(err)
	// Output:
	// field: MsgSeqList[1].MsgSeq
	// reason: must be at least 1
	// payload: is not a valid JSON object: unknown field "MsgSeqs"
}

func ExampleSplitRecall() {
	r := tasks.Recall{GroupId: "@TGS#2J4SZEAEL"}
	for seq := uint64(1); seq <= 25; seq++ {
		r.MsgSeqList = append(r.MsgSeqList, tasks.MsgSeqItem{MsgSeq: seq})
	}
	for _, part := range tasks.SplitRecall(r) {
		fmt.Println(part.Seqs())
	}
	// Output:
	// [1 2 3 4 5 6 7 8 9 10]
	// [11 12 13 14 15 16 17 18 19 20]
	// [21 22 23 24 25]
}
