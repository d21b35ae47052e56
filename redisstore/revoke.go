package redisstore

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// MaxListed bounds what Sessions returns for one user.
	MaxListed = 1000
	// revokeBatch bounds the ids one RevokeUser or RevokeSID round trip
	// reads and deletes.
	revokeBatch = 500
)

// Info describes a live session, for the admin API.
type Info struct {
	ID      string    `json:"id"`
	User    string    `json:"user"`
	Created time.Time `json:"created"`
	Expiry  time.Time `json:"expiry"`
}

func (s *Store) userKey(user string) string { return s.prefix + "u:" + hashName("user", user) }
func (s *Store) sidKey(sid string) string   { return s.prefix + "sid:" + hashName("sid", sid) }
func (s *Store) allKey() string             { return s.prefix + "all" }

// hashName turns a user or provider session id into a key component of
// fixed length that does not spell it.
func hashName(kind, name string) string {
	h := sha256.New()
	h.Write([]byte("authproxy redisstore " + kind + "\x00"))
	h.Write([]byte(name))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// indexScript adds a session id to one index, scored by its expiry, after
// dropping the members that have expired, and keeps the set alive exactly as
// long as its latest member. It touches one key, so it runs on a Cluster.
// TTLs are relative to ARGV[1] (Config.Now), not to Redis's clock.
//
// A refresh passes ARGV[4] = "XX": it only moves the expiry of a member that
// is still there, so a refresh racing a logout or revocation, whose removal
// may run between the refresh's SET and this script, cannot add back a
// member for a deleted session.
//
//	KEYS[1] index; ARGV[1] now (ms); ARGV[2] expiry (ms); ARGV[3] id; ARGV[4] "NX" or "XX"
const indexScript = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if ARGV[4] == 'XX' then
  redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[3])
else
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
end
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if top[2] == nil then return 0 end
local ttl = math.floor(tonumber(top[2]) - tonumber(ARGV[1]))
if ttl < 1 then ttl = 1 end
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
`

// index queues indexScript on pipe. (EVAL rather than EVALSHA: Redis caches
// the compiled script either way, and a pipeline cannot fall back on
// NOSCRIPT. It runs once per login or refresh.)
func (s *Store) index(ctx context.Context, pipe redis.Pipeliner, key string, nowMS, expMS int64, id, mode string) {
	pipe.Eval(ctx, indexScript, []string{key}, nowMS, expMS, id, mode)
}

// deleteCount removes sessions, their members of the count index and of the
// given indexes, in one round trip. It returns how many sessions existed.
func (s *Store) deleteCount(ctx context.Context, ids []string, indexes []string) (int, error) {
	pipe := s.rdb.Pipeline()
	dels := make([]*redis.IntCmd, len(ids))
	for i, id := range ids {
		// One key per command, so that a Cluster routes each to its slot.
		dels[i] = pipe.Unlink(ctx, s.sessionKey(id))
	}
	if len(ids) > 0 {
		members := anySlice(ids)
		pipe.ZRem(ctx, s.allKey(), members...)
		for _, k := range indexes {
			pipe.ZRem(ctx, k, members...)
		}
	}
	_, err := pipe.Exec(ctx)
	if s.cache != nil {
		s.cache.invalidate(ids...) // whatever Redis did
	}
	if err != nil {
		// The deletions may have run although their replies were lost (a
		// reset connection, a deadline): announce them anyway, or other
		// replicas would keep serving them from their caches while a
		// retry, finding them gone, announces nothing. Dropping a live
		// session from the caches costs one GET.
		actx, cancel := s.callCtx(context.WithoutCancel(ctx))
		_ = s.announce(actx, ids...)
		cancel()
		return 0, err
	}
	// Only now that they are gone, so that a replica that drops them cannot
	// read them again (cache.go, "The race").
	if err := s.announce(ctx, ids...); err != nil {
		return 0, err
	}
	n := 0
	for _, d := range dels {
		n += int(d.Val())
	}
	return n, nil
}

func anySlice(ids []string) []any {
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	return args
}

// Sessions lists the live sessions of user, oldest first, at most MaxListed.
func (s *Store) Sessions(ctx context.Context, user string) ([]Info, error) {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	key := s.userKey(user)
	ids, err := s.rdb.ZRangeByScore(ctx, key, &redis.ZRangeBy{
		Min: "(" + strconv.FormatInt(s.now().UnixMilli(), 10), Max: "+inf",
		Count: MaxListed,
	}).Result()
	if err != nil {
		return nil, unavailable("list sessions", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	// Only the plaintext header of each entry: created and expiry.
	pipe := s.rdb.Pipeline()
	heads := make([]*redis.StringCmd, len(ids))
	for i, id := range ids {
		heads[i] = pipe.GetRange(ctx, s.sessionKey(id), 0, headerLen-1)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, unavailable("list sessions", err)
	}
	now := s.now()
	var list []Info
	var gone []string
	for i, id := range ids {
		h, ok := parseHeader([]byte(heads[i].Val()))
		if !ok || !now.Before(h.expiry) {
			gone = append(gone, id) // deleted (logout, Revoke) or expiring
			continue
		}
		list = append(list, Info{ID: id, User: user, Created: h.created, Expiry: h.expiry})
	}
	if len(gone) > 0 {
		// Lazy cleanup; a failure only leaves them for next time.
		_ = s.rdb.ZRem(ctx, key, anySlice(gone)...).Err()
	}
	slices.SortFunc(list, func(a, b Info) int { return a.Created.Compare(b.Created) })
	return list, nil
}

// Revoke ends one session, on every replica at its next request. It returns
// ErrNotFound if no live session has that id.
func (s *Store) Revoke(ctx context.Context, id string) error {
	if !validID(id) {
		return ErrNotFound
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	n, err := s.deleteCount(ctx, []string{id}, nil)
	if err != nil {
		return unavailable("revoke session", err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// RevokeUser ends every session of user and returns how many were alive.
func (s *Store) RevokeUser(ctx context.Context, user string) (int, error) {
	return s.revokeIndex(ctx, s.userKey(user))
}

// RevokeSID ends every session that the provider session sid (the sid claim
// of a back-channel logout token) opened, and returns how many were alive.
func (s *Store) RevokeSID(ctx context.Context, sid string) (int, error) {
	if sid == "" {
		return 0, errors.New("redisstore: empty sid")
	}
	return s.revokeIndex(ctx, s.sidKey(sid))
}

// revokeIndex deletes the sessions of one index, a batch per round trip,
// then the index. A session saved concurrently (a new login) may survive;
// one saved before the call does not.
func (s *Store) revokeIndex(ctx context.Context, key string) (int, error) {
	total := 0
	for {
		cctx, cancel := s.callCtx(ctx)
		ids, err := s.rdb.ZRange(cctx, key, 0, revokeBatch-1).Result()
		if err == nil && len(ids) > 0 {
			var n int
			n, err = s.deleteCount(cctx, ids, []string{key})
			total += n
		}
		cancel()
		if err != nil {
			return total, unavailable("revoke sessions", err)
		}
		if len(ids) < revokeBatch {
			return total, nil
		}
	}
}

// Count returns the number of live sessions, for a metric. It costs one
// ZCOUNT, O(log n).
func (s *Store) Count(ctx context.Context) (int, error) {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	n, err := s.rdb.ZCount(ctx, s.allKey(), "("+strconv.FormatInt(s.now().UnixMilli(), 10), "+inf").Result()
	if err != nil {
		return 0, unavailable("count sessions", err)
	}
	return int(n), nil
}
