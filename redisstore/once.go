package redisstore

import (
	"context"
	"time"
)

// Once reports whether key is new to every replica sharing this Redis, and
// remembers it for ttl. Back-channel logout uses it so that a logout
// token's jti is accepted once, not once per replica.
func (s *Store) Once(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	cctx, cancel := s.callCtx(ctx)
	defer cancel()
	fresh, err := s.rdb.SetNX(cctx, s.onceKey(key), 1, ttl).Result()
	if err != nil {
		return false, unavailable("once", err)
	}
	return fresh, nil
}

// Seen reports whether Once remembers key, without recording it: back-channel
// logout checks a jti before it ends sessions and records it only after, so
// a provider may retry a delivery that failed.
func (s *Store) Seen(ctx context.Context, key string) (bool, error) {
	cctx, cancel := s.callCtx(ctx)
	defer cancel()
	n, err := s.rdb.Exists(cctx, s.onceKey(key)).Result()
	if err != nil {
		return false, unavailable("seen", err)
	}
	return n > 0, nil
}

func (s *Store) onceKey(key string) string { return s.prefix + "once:" + hashName("once", key) }
