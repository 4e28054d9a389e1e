package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/timq/timq/internal/chatapi"
)

// adminMux serves the JSON admin API. It needs no authentication (the
// emulator is a loopback tool) and never serves the secret key.
//
//	GET  /_sim/stats                           Stats
//	GET  /_sim/groups/{id}                     GroupInfo
//	GET  /_sim/groups/{id}/messages/{seq}      MessageState (?topic=TOPIC for a topic)
//	POST /_sim/groups                          seed one group: SeedGroup JSON
//	POST /_sim/seed                            seed many groups: SeedFile JSON, answers {"groups": N}
//	GET  /_sim/faults                          faults per endpoint
//	PUT  /_sim/faults/{command}                set faults: Faults JSON; command is a short name or "all"
//	POST /_sim/reset                           Reset
//
// Errors answer 400 or 404 with {"error": "..."}.
func (s *Server) adminMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_sim/stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Stats())
	})
	mux.HandleFunc("GET /_sim/groups/{id}", func(w http.ResponseWriter, r *http.Request) {
		info, ok := s.Group(r.PathValue("id"))
		if !ok {
			writeError(w, http.StatusNotFound, "group %q does not exist", r.PathValue("id"))
			return
		}
		writeJSON(w, http.StatusOK, info)
	})
	mux.HandleFunc("GET /_sim/groups/{id}/messages/{seq}", func(w http.ResponseWriter, r *http.Request) {
		seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "seq %q is not an unsigned integer", r.PathValue("seq"))
			return
		}
		m, ok := s.Message(r.PathValue("id"), r.URL.Query().Get("topic"), seq)
		if !ok {
			writeError(w, http.StatusNotFound, "no message %d in group %q topic %q", seq, r.PathValue("id"), r.URL.Query().Get("topic"))
			return
		}
		writeJSON(w, http.StatusOK, m)
	})
	mux.HandleFunc("POST /_sim/groups", func(w http.ResponseWriter, r *http.Request) {
		var g SeedGroup
		if err := readJSON(r, &g); err != nil {
			writeError(w, http.StatusBadRequest, "%v", err)
			return
		}
		if err := s.Seed(SeedFile{Groups: []SeedGroup{g}}); err != nil {
			writeError(w, http.StatusBadRequest, "%v", err)
			return
		}
		info, _ := s.Group(g.GroupID)
		writeJSON(w, http.StatusCreated, info)
	})
	mux.HandleFunc("POST /_sim/seed", func(w http.ResponseWriter, r *http.Request) {
		var sf SeedFile
		if err := readSeedBody(r, &sf); err != nil {
			writeError(w, http.StatusBadRequest, "%v", err)
			return
		}
		if err := s.Seed(sf); err != nil {
			writeError(w, http.StatusBadRequest, "%v", err)
			return
		}
		writeJSON(w, http.StatusCreated, map[string]int{"groups": len(sf.Groups)})
	})
	mux.HandleFunc("GET /_sim/faults", func(w http.ResponseWriter, r *http.Request) {
		out := map[string]Faults{}
		for _, ep := range chatapi.Endpoints {
			out[ep.Short()] = s.FaultsOf(ep)
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("PUT /_sim/faults/{command}", func(w http.ResponseWriter, r *http.Request) {
		eps := chatapi.Endpoints
		if name := r.PathValue("command"); name != "all" {
			ep, err := ParseEndpoint(name)
			if err != nil {
				writeError(w, http.StatusNotFound, "%v", err)
				return
			}
			eps = []chatapi.Endpoint{ep}
		}
		var f Faults
		if err := readJSON(r, &f); err != nil {
			writeError(w, http.StatusBadRequest, "%v", err)
			return
		}
		if err := f.Validate(); err != nil {
			writeError(w, http.StatusBadRequest, "%v", err)
			return
		}
		for _, ep := range eps {
			_ = s.SetFaults(ep, f) // validated above
		}
		writeJSON(w, http.StatusOK, f)
	})
	mux.HandleFunc("POST /_sim/reset", func(w http.ResponseWriter, r *http.Request) {
		s.Reset()
		writeJSON(w, http.StatusOK, map[string]string{"status": "reset"})
	})
	mux.HandleFunc("/_sim/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no admin route %s %s", r.Method, r.URL.Path)
	})
	return mux
}

func readJSON(r *http.Request, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		return fmt.Errorf("cannot read the body: %v", err)
	}
	if len(body) > MaxBodyBytes {
		return errors.New("body is too large")
	}
	if err := decodeStrict(body, v); err != nil {
		return fmt.Errorf("bad JSON: %v", err)
	}
	return nil
}

// readSeedBody decodes a SeedFile body, which may be larger than
// MaxBodyBytes (the --seed-file limit applies instead).
func readSeedBody(r *http.Request, sf *SeedFile) error {
	v, err := ReadSeedFile(r.Body)
	if err != nil {
		return fmt.Errorf("bad JSON: %v", err)
	}
	*sf = v
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"cannot encode the answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, map[string]string{"error": fmt.Sprintf(format, args...)})
}
