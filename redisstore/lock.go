package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authproxy/authproxy/session"
)

// refreshLockTTL bounds how long one replica may hold a session's refresh
// lock: longer than a token request, shorter than users' patience.
const refreshLockTTL = 15 * time.Second

// unlockScript deletes the lock only if it is still ours.
var unlockScript = redis.NewScript(`if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) end return 0`)

// LockRefresh takes the session's refresh lock, waiting while another
// replica holds it, so that a session's tokens are refreshed once across
// all replicas: the waiter then reloads the session and finds it renewed.
// It returns when the lock is taken, ctx ends, or refreshLockTTL passes
// (then it returns an error wrapping session.ErrUnavailable and the caller
// may serve the session as is). sess must come from Load (have an ID).
func (s *Store) LockRefresh(ctx context.Context, sess session.Session) (unlock func(), err error) {
	if !validID(sess.ID) {
		return nil, errors.New("redisstore: LockRefresh of a session not loaded from this store")
	}
	key := s.prefix + "lock:" + sess.ID
	var b [16]byte
	_, _ = rand.Read(b[:])
	token := base64.RawURLEncoding.EncodeToString(b[:])
	deadline := time.Now().Add(refreshLockTTL)
	for {
		cctx, cancel := s.callCtx(ctx)
		ok, err := s.rdb.SetNX(cctx, key, token, refreshLockTTL).Result()
		cancel()
		if err != nil {
			return nil, unavailable("lock", err)
		}
		if ok {
			if s.cache != nil {
				// The caller reads the session again to see whether the
				// replica that held the lock renewed it: read Redis, not a
				// copy older than that renewal.
				s.cache.invalidate(sess.ID)
			}
			return func() {
				cctx, cancel := s.callCtx(context.WithoutCancel(ctx))
				defer cancel()
				_ = unlockScript.Run(cctx, s.rdb, []string{key}, token).Err()
			}, nil
		}
		if time.Now().After(deadline) {
			return nil, unavailable("lock", context.DeadlineExceeded)
		}
		select {
		case <-ctx.Done():
			return nil, unavailable("lock", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
