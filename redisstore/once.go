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
	fresh, err := s.rdb.SetNX(cctx, s.prefix+"once:"+hashName("once", key), 1, ttl).Result()
	if err != nil {
		return false, unavailable("once", err)
	}
	return fresh, nil
}
