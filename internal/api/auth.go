package api

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/danielgtaylor/huma/v2"
)

// Scope is what a token may do.
type Scope string

// Scopes, each including the one before.
const (
	// ScopeEnqueue enqueues operations, creates jobs and reads everything.
	ScopeEnqueue Scope = "enqueue"
	// ScopeAdmin also pauses, resumes and cancels jobs and requeues and
	// purges dead letters.
	ScopeAdmin Scope = "admin"
)

// allows reports whether a token of scope s may do what needs scope need.
func (s Scope) allows(need Scope) bool { return need == ScopeEnqueue || s == ScopeAdmin }

// Token is one bearer token and its scope.
type Token struct {
	Secret string
	Scope  Scope
}

// MinTokenLength is the shortest token accepted: shorter ones are guessable.
const MinTokenLength = 16

func (t Token) check() error {
	switch {
	case t.Scope != ScopeEnqueue && t.Scope != ScopeAdmin:
		return fmt.Errorf("scope %q: want %s or %s", t.Scope, ScopeEnqueue, ScopeAdmin)
	case len(t.Secret) < MinTokenLength:
		return fmt.Errorf("a %s token must be at least %d characters", t.Scope, MinTokenLength)
	case strings.ContainsAny(t.Secret, " \t\r\n,"):
		return fmt.Errorf("a %s token must not hold white space or commas", t.Scope)
	}
	return nil
}

// Environment variables holding tokens: comma-separated lists (several
// tokens of a scope let one be rotated out), or files holding one per line.
// Never flags: flags show in ps.
const (
	EnvToken          = "TIMQ_API_TOKEN"
	EnvTokenFile      = "TIMQ_API_TOKEN_FILE"
	EnvAdminToken     = "TIMQ_API_ADMIN_TOKEN"
	EnvAdminTokenFile = "TIMQ_API_ADMIN_TOKEN_FILE"
)

// maxTokenFile bounds a token file.
const maxTokenFile = 64 << 10

// LoadTokens reads the tokens from the environment. Errors name the
// variable, never a token.
func LoadTokens(getenv func(string) string) ([]Token, error) {
	var out []Token
	for _, v := range []struct {
		env, file string
		scope     Scope
	}{{EnvToken, EnvTokenFile, ScopeEnqueue}, {EnvAdminToken, EnvAdminTokenFile, ScopeAdmin}} {
		list, path := getenv(v.env), getenv(v.file)
		if list != "" && path != "" {
			return nil, fmt.Errorf("%s: set only one of %s and %s", v.env, v.env, v.file)
		}
		var secrets []string
		if path != "" {
			fi, err := os.Stat(path)
			if err != nil {
				return nil, fmt.Errorf("%s: %v", v.file, errors.Unwrap(err))
			}
			if !fi.Mode().IsRegular() || fi.Size() > maxTokenFile {
				return nil, fmt.Errorf("%s: %s is not a regular file of at most %d bytes", v.file, path, maxTokenFile)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return nil, fmt.Errorf("%s: %v", v.file, errors.Unwrap(err))
			}
			secrets = strings.Split(string(b), "\n")
		} else {
			secrets = strings.Split(list, ",")
		}
		for _, sec := range secrets {
			if sec = strings.TrimSpace(sec); sec == "" {
				continue
			}
			t := Token{Secret: sec, Scope: v.scope}
			if err := t.check(); err != nil {
				return nil, fmt.Errorf("%s: %w", cmpOr(path, v.env, v.file), err)
			}
			out = append(out, t)
		}
	}
	return out, nil
}

func cmpOr(path, env, file string) string {
	if path != "" {
		return file
	}
	return env
}

// needs is the Metadata key of an operation's scope.
const needs = "scope"

// authenticate lets a request in when it carries a token whose scope the
// operation allows, comparing with every token in constant time; with no
// token configured every request is let in. The OpenAPI description
// itself is public.
func (s *Server) authenticate(ctx huma.Context, next func(huma.Context)) {
	need, _ := ctx.Operation().Metadata[needs].(Scope)
	if need == "" || len(s.cfg.Tokens) == 0 {
		next(ctx)
		return
	}
	h := ctx.Header("Authorization")
	given, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || given == "" {
		ctx.SetHeader("WWW-Authenticate", `Bearer realm="timq"`)
		_ = huma.WriteErr(s.api, ctx, 401, "a bearer token is required (Authorization: Bearer TOKEN)")
		return
	}
	var scope Scope
	for _, t := range s.cfg.Tokens {
		if subtle.ConstantTimeCompare([]byte(given), []byte(t.Secret)) == 1 {
			scope = t.Scope
		}
	}
	switch {
	case scope == "":
		ctx.SetHeader("WWW-Authenticate", `Bearer realm="timq", error="invalid_token"`)
		_ = huma.WriteErr(s.api, ctx, 401, "the bearer token is not valid")
	case !scope.allows(need):
		_ = huma.WriteErr(s.api, ctx, 403, fmt.Sprintf("this needs a token of scope %s; the one given is %s", need, scope))
	default:
		next(ctx)
	}
}
