package tasks

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Modify overwrites the MsgBody and/or CloudCustomData of one historical
// message through modify_group_msg. Applying the same modify twice leaves
// the same message.
type Modify struct {
	GroupId         string       `json:"GroupId"`
	MsgSeq          uint64       `json:"MsgSeq"`
	MsgBody         []MsgElement `json:"MsgBody,omitempty"`
	CloudCustomData *string      `json:"CloudCustomData,omitempty"`
	TopicId         string       `json:"TopicId,omitempty"`
}

// TaskType returns TypeModify.
func (Modify) TaskType() string { return TypeModify }

// DefaultQueue returns QueueModify.
func (Modify) DefaultQueue() string { return QueueModify }

// Validate checks GroupId, TopicId, MsgSeq (at least 1), that MsgBody or
// CloudCustomData is set, every MsgBody element (see ValidateMsgBody), and
// the size of CloudCustomData.
func (m Modify) Validate() error {
	if err := checkID("GroupId", m.GroupId, true, MaxGroupIDBytes); err != nil {
		return err
	}
	if err := checkID("TopicId", m.TopicId, false, MaxTopicIDBytes); err != nil {
		return err
	}
	if m.MsgSeq == 0 {
		return invalid("MsgSeq", "is required and must be at least 1")
	}
	if m.MsgBody == nil && m.CloudCustomData == nil {
		return invalid("MsgBody", "or CloudCustomData is required: a modify must change something")
	}
	if m.MsgBody != nil {
		if err := ValidateMsgBody(m.MsgBody); err != nil {
			var be *MsgBodyError
			if errors.As(err, &be) {
				return invalid(be.Field, "%s", be.Reason)
			}
			return invalid("MsgBody", "%v", err)
		}
	}
	if m.CloudCustomData != nil {
		switch {
		case len(*m.CloudCustomData) > MaxCloudCustomDataBytes:
			return invalid("CloudCustomData", "is %d bytes, more than %d", len(*m.CloudCustomData), MaxCloudCustomDataBytes)
		case !utf8.ValidString(*m.CloudCustomData):
			// JSON would carry invalid UTF-8 as U+FFFD: not the data given.
			return invalid("CloudCustomData", "is not valid UTF-8")
		}
	}
	return nil
}

func fieldIndex(list string, i int, field string) string {
	return fmt.Sprintf("%s[%s].%s", list, strconv.Itoa(i), field)
}
