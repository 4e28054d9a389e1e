package sim

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/timq/timq/tasks"

	"github.com/timq/timq/internal/chatapi"
)

// GroupType is a built-in Chat group type.
type GroupType string

// The group types. Work and Meeting are the new names of Private and
// ChatRoom and are the same type.
const (
	GroupPrivate    GroupType = "Private"
	GroupWork                 = GroupPrivate
	GroupPublic     GroupType = "Public"
	GroupChatRoom   GroupType = "ChatRoom"
	GroupMeeting              = GroupChatRoom
	GroupAVChatRoom GroupType = "AVChatRoom"
	GroupCommunity  GroupType = "Community"
)

// ParseGroupType reads a group type name, ignoring case; "Work" and
// "Meeting" give Private and ChatRoom.
func ParseGroupType(s string) (GroupType, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "private", "work":
		return GroupPrivate, nil
	case "public":
		return GroupPublic, nil
	case "chatroom", "meeting":
		return GroupChatRoom, nil
	case "avchatroom":
		return GroupAVChatRoom, nil
	case "community":
		return GroupCommunity, nil
	}
	return "", fmt.Errorf("unknown group type %q (want Private, Work, Public, ChatRoom, Meeting, AVChatRoom or Community)", s)
}

const (
	generatedPrefix = "@TGS#"
	communityPrefix = "@TGS#_"
	topicInfix      = "@TOPIC#"
	maxGroupIDLen   = 48
	maxTopicIDLen   = 128
)

// CheckGroupID reports why id is not a valid group ID: empty, longer than
// 48 bytes, not printable ASCII, or starting "@TGS#" without being a
// generated ID ("@TGS#" and letters and digits) or a community ID ("@TGS#_"
// and more). The REST API answers 10015 for such an ID.
func CheckGroupID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("group ID is empty")
	case len(id) > maxGroupIDLen:
		return fmt.Errorf("group ID is %d bytes, more than %d", len(id), maxGroupIDLen)
	case !printable(id):
		return fmt.Errorf("group ID holds a character that is not printable ASCII")
	case strings.HasPrefix(id, communityPrefix):
		if len(id) == len(communityPrefix) {
			return fmt.Errorf("community ID has nothing after %q", communityPrefix)
		}
	case strings.HasPrefix(id, generatedPrefix):
		rest := id[len(generatedPrefix):]
		if rest == "" || !alnum(rest) {
			return fmt.Errorf("group ID starts %q but is not a generated ID", generatedPrefix)
		}
	}
	return nil
}

// checkTopicID reports why topic is not a topic ID of community groupID
// ("{groupID}@TOPIC#{name}").
func checkTopicID(groupID, topic string) error {
	switch {
	case len(topic) > maxTopicIDLen:
		return fmt.Errorf("topic ID is %d bytes, more than %d", len(topic), maxTopicIDLen)
	case !printable(topic):
		return fmt.Errorf("topic ID holds a character that is not printable ASCII")
	case !strings.HasPrefix(topic, groupID+topicInfix) || len(topic) == len(groupID)+len(topicInfix):
		return fmt.Errorf("topic ID %q is not a topic of %q (want %q followed by a name)", topic, groupID, groupID+topicInfix)
	}
	return nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func alnum(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// group is one group's state. Community groups may hold messages directly
// (a community without topics) and in topics.
type group struct {
	id     string
	typ    GroupType
	main   *thread
	topics map[string]*thread
	// lastClear is when the last successful clear_group_msg call arrived.
	lastClear time.Time
}

// thread is a sequence of messages with seqs 1..len(msgs) and a clear
// watermark: every seq <= cleared is cleared.
type thread struct {
	msgs    []*message
	cleared uint64
}

type message struct {
	from     string
	random   uint32
	time     int64
	body     []chatapi.MsgElement
	ccd      string
	recalled bool
	modified int
	// recalledAt and modifiedAt are when the call that recalled the message,
	// and the last call that modified it, arrived (before injected latency).
	recalledAt, modifiedAt time.Time
}

func (t *thread) max() uint64 { return uint64(len(t.msgs)) }

func (t *thread) get(seq uint64) *message {
	if seq == 0 || seq > t.max() {
		return nil
	}
	return t.msgs[seq-1]
}

func (t *thread) append(m *message) uint64 {
	t.msgs = append(t.msgs, m)
	return t.max()
}

// MessageState is one message as the emulator holds it.
type MessageState struct {
	GroupID         string               `json:"GroupId"`
	TopicID         string               `json:"TopicId,omitempty"`
	MsgSeq          uint64               `json:"MsgSeq"`
	From            string               `json:"From_Account"`
	Random          uint32               `json:"Random"`
	Time            int64                `json:"MsgTime"` // Unix seconds
	MsgBody         []chatapi.MsgElement `json:"MsgBody"`
	CloudCustomData string               `json:"CloudCustomData"`
	Cleared         bool                 `json:"Cleared"`  // seq <= the clear watermark
	Recalled        bool                 `json:"Recalled"` // recalled; irrevocable
	Modified        int                  `json:"Modified"` // successful modify_group_msg calls
	// RecalledAt is when the call that recalled the message arrived, before
	// any injected latency, by Config.Now; zero (left out of JSON) when not
	// recalled. A repeated recall does not move it.
	RecalledAt time.Time `json:"RecalledAt,omitzero"`
	// ModifiedAt is when the last successful modify_group_msg call for the
	// message arrived, before any injected latency; zero (left out of JSON)
	// when never modified.
	ModifiedAt time.Time `json:"ModifiedAt,omitzero"`
}

func (s *Server) newGroup(id string, typ GroupType) *group {
	g := &group{id: id, typ: typ, main: &thread{}}
	if typ == GroupCommunity {
		g.topics = map[string]*thread{}
	}
	s.groups[id] = g
	return g
}

// createGroupLocked validates and creates a group; s.mu is held.
func (s *Server) createGroupLocked(id string, typ GroupType) (*group, error) {
	if err := CheckGroupID(id); err != nil {
		return nil, errorf(CodeBadGroupID, "%v", err)
	}
	typ, err := ParseGroupType(string(typ))
	if err != nil {
		return nil, errorf(CodeBadParam, "%v", err)
	}
	community := strings.HasPrefix(id, communityPrefix)
	if community && typ != GroupCommunity {
		return nil, errorf(CodeBadGroupID, "group ID %q starts %q, which only Community groups use", id, communityPrefix)
	}
	if !community && typ == GroupCommunity {
		return nil, errorf(CodeBadGroupID, "a Community group ID must start %q", communityPrefix)
	}
	if _, ok := s.groups[id]; ok {
		return nil, errorf(CodeBadParam, "group %q already exists", id)
	}
	return s.newGroup(id, typ), nil
}

// CreateGroup creates an empty group. The ID must pass CheckGroupID; a
// Community's ID must start "@TGS#_" and no other type's may. Creating an
// existing group is an error.
func (s *Server) CreateGroup(id string, typ GroupType) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.createGroupLocked(id, typ)
	if err != nil {
		return err
	}
	return nil
}

// CreateTopic creates an empty topic in an existing Community. The topic ID
// is the group ID, "@TOPIC#" and a name.
func (s *Server) CreateTopic(groupID, topicID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.groups[groupID]
	if !ok {
		return errorf(CodeGroupMissing, "group %q does not exist", groupID)
	}
	if g.typ != GroupCommunity {
		return errorf(CodeBadParam, "group %q is %s; only Community groups have topics", groupID, g.typ)
	}
	if err := checkTopicID(groupID, topicID); err != nil {
		return errorf(CodeBadParam, "%v", err)
	}
	if _, ok := g.topics[topicID]; ok {
		return errorf(CodeBadParam, "topic %q already exists", topicID)
	}
	g.topics[topicID] = &thread{}
	return nil
}

// AddMessages appends n text messages from the first admin to a group (or
// to one of its topics when topicID is not empty) and returns the first and
// last new seq. With n == 0 it returns the current last seq twice.
func (s *Server) AddMessages(groupID, topicID string, n int) (first, last uint64, err error) {
	if n < 0 || n > MaxSeedMessages {
		return 0, 0, errorf(CodeBadParam, "message count %d is not within 0..%d", n, MaxSeedMessages)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.groups[groupID]
	if !ok {
		return 0, 0, errorf(CodeGroupMissing, "group %q does not exist", groupID)
	}
	t := g.main
	if topicID != "" {
		if t, ok = g.topics[topicID]; !ok {
			return 0, 0, errorf(CodeGroupMissing, "topic %q does not exist", topicID)
		}
	}
	now := s.cfg.Now().Unix()
	first = t.max() + 1
	for i := 0; i < n; i++ {
		seq := t.max() + 1
		m := &message{
			from:   s.cfg.Admins[0],
			random: uint32(seq),
			time:   now,
			body:   tasks.TextBody(fmt.Sprintf("seed message %d", seq)),
		}
		t.append(m)
		s.cb.add(afterSendEvent{GroupID: groupID, TopicID: topicID, From: m.from, Type: g.typ, Seq: seq, Random: m.random, Time: now, Body: m.body})
	}
	if n == 0 {
		return t.max(), t.max(), nil
	}
	return first, t.max(), nil
}

// Message returns the state of one message, and false if the group, topic
// or seq does not exist.
func (s *Server) Message(groupID, topicID string, seq uint64) (MessageState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.groups[groupID]
	if !ok {
		return MessageState{}, false
	}
	t := g.main
	if topicID != "" {
		if t, ok = g.topics[topicID]; !ok {
			return MessageState{}, false
		}
	}
	m := t.get(seq)
	if m == nil {
		return MessageState{}, false
	}
	return MessageState{
		GroupID: groupID, TopicID: topicID, MsgSeq: seq,
		From: m.from, Random: m.random, Time: m.time,
		MsgBody: cloneBody(m.body), CloudCustomData: m.ccd,
		Cleared: seq <= t.cleared, Recalled: m.recalled, Modified: m.modified,
		RecalledAt: m.recalledAt, ModifiedAt: m.modifiedAt,
	}, true
}

// GroupInfo describes one group for the admin API.
type GroupInfo struct {
	GroupID string            `json:"GroupId"`
	Type    GroupType         `json:"Type"`
	MaxSeq  uint64            `json:"MaxSeq"`
	Cleared uint64            `json:"ClearedUpTo"`
	Topics  map[string]uint64 `json:"Topics,omitempty"` // topic ID -> max seq
	// LastClearAt is when the last successful clear_group_msg call for the
	// group arrived, before any injected latency; zero (left out of JSON)
	// when none has.
	LastClearAt time.Time `json:"LastClearAt,omitzero"`
}

// Group describes a group, and false if it does not exist.
func (s *Server) Group(id string) (GroupInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.groups[id]
	if !ok {
		return GroupInfo{}, false
	}
	info := GroupInfo{GroupID: id, Type: g.typ, MaxSeq: g.main.max(), Cleared: g.main.cleared, LastClearAt: g.lastClear}
	if len(g.topics) > 0 {
		info.Topics = make(map[string]uint64, len(g.topics))
		for k, t := range g.topics {
			info.Topics[k] = t.max()
		}
	}
	return info, true
}

func cloneBody(b []chatapi.MsgElement) []chatapi.MsgElement {
	if b == nil {
		return nil
	}
	out := make([]chatapi.MsgElement, len(b))
	for i, e := range b {
		out[i] = chatapi.MsgElement{MsgType: e.MsgType, MsgContent: append(json.RawMessage(nil), e.MsgContent...)}
	}
	return out
}

// lookup finds the thread a request names, creating the group or topic when
// Config.AutoCreate is set. s.mu is held. A non-zero code is the answer.
func (s *Server) lookup(groupID, topicID string) (*group, *thread, int, string) {
	if err := CheckGroupID(groupID); err != nil {
		return nil, nil, CodeBadGroupID, err.Error()
	}
	g, ok := s.groups[groupID]
	if !ok {
		if !s.cfg.AutoCreate {
			return nil, nil, CodeGroupMissing, fmt.Sprintf("group %s does not exist", groupID)
		}
		typ := GroupPublic
		if strings.HasPrefix(groupID, communityPrefix) {
			typ = GroupCommunity
		}
		g = s.newGroup(groupID, typ)
	}
	if topicID == "" {
		return g, g.main, 0, ""
	}
	if g.typ != GroupCommunity {
		return nil, nil, CodeBadParam, fmt.Sprintf("TopicId applies only to Community groups; %s is %s", groupID, g.typ)
	}
	if err := checkTopicID(groupID, topicID); err != nil {
		return nil, nil, CodeBadParam, err.Error()
	}
	t, ok := g.topics[topicID]
	if !ok {
		if !s.cfg.AutoCreate {
			return nil, nil, CodeGroupMissing, fmt.Sprintf("topic %s does not exist", topicID)
		}
		t = &thread{}
		g.topics[topicID] = t
	}
	return g, t, 0, ""
}
