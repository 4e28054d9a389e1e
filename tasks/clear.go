package tasks

// Clear clears a group's message history through clear_group_msg: every
// message when MsgSeq is nil, else messages with seq <= *MsgSeq. Clearing
// only marks messages deleted, and clearing twice is harmless.
type Clear struct {
	GroupId string  `json:"GroupId"`
	MsgSeq  *uint64 `json:"MsgSeq,omitempty"`
}

// TaskType returns TypeClear.
func (Clear) TaskType() string { return TypeClear }

// DefaultQueue returns QueueClear.
func (Clear) DefaultQueue() string { return QueueClear }

// Validate checks GroupId and MsgSeq (at least 1 when set).
func (c Clear) Validate() error {
	if err := checkID("GroupId", c.GroupId, true, MaxGroupIDBytes); err != nil {
		return err
	}
	if c.MsgSeq != nil && *c.MsgSeq == 0 {
		return invalid("MsgSeq", "must be at least 1 when set (leave it out to clear all)")
	}
	return nil
}
