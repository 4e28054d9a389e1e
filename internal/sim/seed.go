package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/timq/timq/internal/chatapi"
)

// SeedFile is the --seed-file format:
//
//	{"groups":[{"GroupId":"@TGS#_c1","Type":"Community","Messages":5,
//	            "Topics":["@TGS#_c1@TOPIC#_a", {"TopicId":"@TGS#_c1@TOPIC#_b","Messages":3}]}]}
type SeedFile struct {
	Groups []SeedGroup `json:"groups"`
}

// SeedGroup is one group to create, with Messages text messages and, for a
// Community, topics.
type SeedGroup struct {
	GroupID  string      `json:"GroupId"`
	Type     GroupType   `json:"Type"`
	Messages int         `json:"Messages,omitempty"`
	Topics   []SeedTopic `json:"Topics,omitempty"`
}

// SeedTopic is one topic to create in a Community. In JSON it is either an
// object {"TopicId","Messages"} or just the topic ID string.
type SeedTopic struct {
	TopicID  string `json:"TopicId"`
	Messages int    `json:"Messages,omitempty"`
}

// UnmarshalJSON accepts a bare topic ID string as well as the object form.
func (t *SeedTopic) UnmarshalJSON(b []byte) error {
	var id string
	if err := json.Unmarshal(b, &id); err == nil {
		*t = SeedTopic{TopicID: id}
		return nil
	}
	type plain SeedTopic
	var p plain
	if err := decodeStrict(b, &p); err != nil {
		return err
	}
	*t = SeedTopic(p)
	return nil
}

// ReadSeedFile decodes a SeedFile; unknown fields are an error.
func ReadSeedFile(r io.Reader) (SeedFile, error) {
	var sf SeedFile
	b, err := io.ReadAll(io.LimitReader(r, 64<<20))
	if err != nil {
		return sf, err
	}
	if err := decodeStrict(b, &sf); err != nil {
		return sf, fmt.Errorf("seed file: %v", err)
	}
	return sf, nil
}

func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("data after the JSON value")
	}
	return nil
}

// Seed creates every group, topic and message of sf, stopping at the first
// error (groups created before it stay).
func (s *Server) Seed(sf SeedFile) error {
	for _, g := range sf.Groups {
		if err := s.CreateGroup(g.GroupID, g.Type); err != nil {
			return fmt.Errorf("group %q: %w", g.GroupID, err)
		}
		if _, _, err := s.AddMessages(g.GroupID, "", g.Messages); err != nil {
			return fmt.Errorf("group %q: %w", g.GroupID, err)
		}
		for _, t := range g.Topics {
			if err := s.CreateTopic(g.GroupID, t.TopicID); err != nil {
				return fmt.Errorf("topic %q: %w", t.TopicID, err)
			}
			if _, _, err := s.AddMessages(g.GroupID, t.TopicID, t.Messages); err != nil {
				return fmt.Errorf("topic %q: %w", t.TopicID, err)
			}
		}
	}
	return nil
}

// ParseGroupSpec reads the --group flag's "ID:TYPE[:N]" (N messages, default
// 0). The ID may itself hold colons: TYPE and N are taken from the right.
func ParseGroupSpec(spec string) (SeedGroup, error) {
	parts := strings.Split(spec, ":")
	var g SeedGroup
	if len(parts) >= 3 {
		if n, err := strconv.Atoi(parts[len(parts)-1]); err == nil {
			if n < 0 || n > MaxSeedMessages {
				return g, fmt.Errorf("group %q: message count %d is not within 0..%d", spec, n, MaxSeedMessages)
			}
			g.Messages = n
			parts = parts[:len(parts)-1]
		}
	}
	if len(parts) < 2 {
		return g, fmt.Errorf("group %q: want ID:TYPE[:N]", spec)
	}
	typ, err := ParseGroupType(parts[len(parts)-1])
	if err != nil {
		return g, fmt.Errorf("group %q: %v", spec, err)
	}
	g.Type = typ
	g.GroupID = strings.Join(parts[:len(parts)-1], ":")
	if err := CheckGroupID(g.GroupID); err != nil {
		return g, fmt.Errorf("group %q: %v", spec, err)
	}
	return g, nil
}

// FaultSpec is a parsed --fault flag: which endpoints, and which fields of
// their Faults it sets. Fields it does not name keep their value, so several
// flags for one endpoint add up.
type FaultSpec struct {
	Endpoints []chatapi.Endpoint
	set       []func(*Faults)
}

// Apply returns f with the spec's fields set.
func (fs FaultSpec) Apply(f Faults) Faults {
	f = f.clone()
	for _, set := range fs.set {
		set(&f)
	}
	return f
}

// ParseFaultSpec reads the --fault flag:
//
//	ENDPOINT:ITEM[,ITEM...]
//
// ENDPOINT is a short name (clear_group_msg, group_msg_recall,
// modify_group_msg, send_group_msg, group_msg_get_simple) or "all". Each ITEM
// is one of
//
//	code=10002:0.1  (or 10002:0.1)  answer ErrorCode 10002 with probability 0.1
//	502:0.05                         answer HTTP 502 with probability 0.05
//	hang:0.02                        hang with probability 0.02
//	hang-for:20s                     how long a hang lasts
//	latency:40ms                     delay every call by 40ms
//	jitter:20ms                      plus up to 20ms more
//
// Durations are Go durations or integer milliseconds. Applying the spec
// must still give valid Faults (see Faults.Validate).
func ParseFaultSpec(spec string) (FaultSpec, error) {
	var fs FaultSpec
	name, items, found := strings.Cut(spec, ":")
	if !found || items == "" {
		return fs, fmt.Errorf("fault %q: want ENDPOINT:ITEM[,ITEM...], e.g. clear_group_msg:code=10002:0.1,latency:40ms", spec)
	}
	if name == "all" {
		fs.Endpoints = append([]chatapi.Endpoint(nil), chatapi.Endpoints...)
	} else {
		ep, err := ParseEndpoint(name)
		if err != nil {
			return fs, fmt.Errorf("fault %q: %v", spec, err)
		}
		fs.Endpoints = []chatapi.Endpoint{ep}
	}
	for _, item := range strings.Split(items, ",") {
		item = strings.TrimSpace(item)
		if c, ok := strings.CutPrefix(item, "code="); ok {
			item = c
		}
		key, val, found := strings.Cut(item, ":")
		if !found {
			key, val, found = strings.Cut(item, "=")
		}
		if !found || val == "" {
			return fs, fmt.Errorf("fault %q: item %q: want KEY:VALUE", spec, item)
		}
		set, err := faultItem(strings.ToLower(key), val)
		if err != nil {
			return fs, fmt.Errorf("fault %q: item %q: %v", spec, item, err)
		}
		fs.set = append(fs.set, set)
	}
	if err := fs.Apply(Faults{}).Validate(); err != nil {
		return fs, fmt.Errorf("fault %q: %v", spec, err)
	}
	return fs, nil
}

func faultItem(key, val string) (func(*Faults), error) {
	prob := func() (float64, error) {
		p, err := strconv.ParseFloat(val, 64)
		if err != nil || p < 0 || p > 1 {
			return 0, fmt.Errorf("probability %q is not a number within [0,1]", val)
		}
		return p, nil
	}
	dur := func() (time.Duration, error) {
		d, err := parseDuration(val)
		if err == nil && d < 0 {
			err = fmt.Errorf("%q is negative", val)
		}
		return d, err
	}
	switch key {
	case "502":
		p, err := prob()
		return func(f *Faults) { f.HTTP502 = p }, err
	case "hang":
		p, err := prob()
		return func(f *Faults) { f.Hang = p }, err
	case "hang-for", "hangfor", "hang_for":
		d, err := dur()
		return func(f *Faults) { f.HangFor = d }, err
	case "latency":
		d, err := dur()
		return func(f *Faults) { f.Latency = d }, err
	case "jitter":
		d, err := dur()
		return func(f *Faults) { f.Jitter = d }, err
	}
	code, err := strconv.Atoi(key)
	if err != nil || code <= 0 {
		return nil, fmt.Errorf("unknown key %q (want an ErrorCode, 502, hang, hang-for, latency or jitter)", key)
	}
	p, err := prob()
	return func(f *Faults) {
		if f.Codes == nil {
			f.Codes = map[int]float64{}
		}
		f.Codes[code] = p
	}, err
}
