package redis

import (
	"context"
	"errors"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentd/agentd/internal/breaker"
)

// breakerHook puts Redis's circuit breaker in front of every command and
// pipeline of the client, so every user (the response cache, rate limits,
// abuse detection, the health check) shares it: while it is open a
// command fails at once with a *breaker.OpenError instead of waiting for
// its timeout, and each user falls back to its local state at once. The
// health check's PING, every few seconds, is the probe that closes it
// again once Redis answers.
//
// Failures: no answer (connection refused or lost, a timeout, the pool
// exhausted). Any reply, an error reply too ("no key" included), is a
// success; a command its caller cancelled counts as nothing.
type breakerHook struct{ b *breaker.Breaker }

func (h breakerHook) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h breakerHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		done, err := h.b.Allow()
		if err != nil {
			cmd.SetErr(err)
			return err
		}
		err = next(ctx, cmd)
		done(outcome(ctx, err))
		return err
	}
}

func (h breakerHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		done, err := h.b.Allow()
		if err != nil {
			for _, c := range cmds {
				c.SetErr(err)
			}
			return err
		}
		err = next(ctx, cmds)
		done(outcome(ctx, err))
		return err
	}
}

func outcome(ctx context.Context, err error) breaker.Outcome {
	var reply goredis.Error
	switch {
	case err == nil, errors.Is(err, goredis.Nil):
		return breaker.Success
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, goredis.ErrPoolTimeout):
		return breaker.Failure
	case ctx.Err() != nil:
		return breaker.Ignore
	case errors.As(err, &reply):
		return breaker.Success // Redis answered
	}
	return breaker.Failure // refused, reset, EOF, closed: no answer
}
