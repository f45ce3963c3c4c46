// Package abuseredis keeps the abuse detector's shared throttles in Redis
// (abuse.Shared): one hash, <prefix>throttled, of subject id → entry.
package abuseredis

import (
	"context"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// DefaultPrefix is put before the hash's key.
const DefaultPrefix = "agentd:abuse:"

// Store is an abuse.Shared in Redis.
type Store struct {
	rdb goredis.Cmdable
	key string
}

// New returns a Store on rdb (internal/redis's Client.Raw) under
// prefix ("" for DefaultPrefix).
func New(rdb goredis.Cmdable, prefix string) *Store {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return &Store{rdb: rdb, key: prefix + "throttled"}
}

// Put sets field to value; the hash expires ttl after the last Put.
func (s *Store) Put(ctx context.Context, field string, value []byte, ttl time.Duration) error {
	_, err := s.rdb.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		p.HSet(ctx, s.key, field, value)
		p.PExpire(ctx, s.key, ttl)
		return nil
	})
	return err
}

// All returns every field and its value.
func (s *Store) All(ctx context.Context) (map[string]string, error) {
	return s.rdb.HGetAll(ctx, s.key).Result()
}

// delIfSame deletes a field only when it still holds the value read
// (another instance may have replaced it meanwhile).
var delIfSame = goredis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
`)

// DeleteIf deletes field when its value is still value.
func (s *Store) DeleteIf(ctx context.Context, field, value string) error {
	return delIfSame.Run(ctx, s.rdb, []string{s.key}, field, value).Err()
}
