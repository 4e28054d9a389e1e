package chatapi

import (
	"math/rand/v2"
	"sync"
	"time"

	"github.com/tencentyun/tls-sig-api-v2-golang/tencentyun"
)

func randUint32() uint32 { return rand.Uint32() }

// signer makes and caches the admin's UserSig. It is safe for concurrent use.
//
// One mutex guards the cache and is held while signing (a few microseconds of
// HMAC and zlib), so when the sig runs out exactly one caller signs again and
// the others wait for and share its result: no thundering herd.
//
// The secret key lives only inside the sign closure, never in a struct field,
// so no %+v of a Client or signer can print it.
type signer struct {
	sign func(expireSeconds int) (string, error)
	ttl  time.Duration
	now  func() time.Time

	mu       sync.Mutex
	sig      string    // cached sig; "" when none
	renewAt  time.Time // sig is made again at or after this time
	rejected string    // last sig the API refused; never handed out again
}

func newSigner(cfg Config) *signer {
	app, key, admin := int(cfg.SDKAppID), cfg.SecretKey, cfg.Admin
	return &signer{
		sign: func(expire int) (string, error) {
			return tencentyun.GenUserSig(app, key, admin, expire)
		},
		ttl: cfg.SigTTL,
		now: cfg.Now,
	}
}

// get returns the cached sig, signing a new one first when there is none or
// less than a quarter of the cached one's life is left.
func (s *signer) get() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.sig != "" && now.Before(s.renewAt) {
		return s.sig, nil
	}
	expire := int(s.ttl / time.Second)
	sig, err := s.sign(expire)
	if err == nil && sig == s.rejected {
		// The library's issue time has one-second resolution: a sig made
		// in the same second as the refused one would be identical. A
		// one-second shorter lifetime makes it differ.
		sig, err = s.sign(expire - 1)
	}
	if err != nil {
		return "", err
	}
	s.sig = sig
	s.renewAt = now.Add(s.ttl - s.ttl/4)
	return sig, nil
}

// invalidate drops sig from the cache if it is still the cached one, so that
// many calls refused with the same sig cause one new signing, not many.
func (s *signer) invalidate(sig string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sig == sig {
		s.sig = ""
		s.rejected = sig
	}
}
