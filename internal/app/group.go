package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
)

// errStoppedEarly: a background loop returned while nobody had asked it to
// stop. It counts as a failure: the process must not go on half alive.
var errStoppedEarly = errors.New("stopped without being asked to")

// group runs components as one, in the manner of github.com/oklog/run
// (written out here: it is forty lines, and the stop order below is
// stricter than oklog's, which interrupts all actors at once).
//
// run starts every component in the order added and waits for the first
// to return, for whatever reason (a signal, a drain request, a failure).
// It then stops the others one at a time in the REVERSE order, each only
// after the one stopped before it has returned, like deferred calls: the
// component added last (the HTTP server and the queue) drains first while
// the background loops added before it (simulator, key pool, listeners)
// still serve it.
type group struct {
	log    *slog.Logger
	actors []actor
}

type actor struct {
	name      string
	execute   func() error
	interrupt func(error)
}

// add adds a component: execute runs it until it ends or interrupt makes it
// end. interrupt must make execute return; it may block while it does.
func (g *group) add(name string, execute func() error, interrupt func(error)) {
	g.actors = append(g.actors, actor{name: name, execute: execute, interrupt: interrupt})
}

// addLoop adds a background loop that runs until its context ends, on a
// context derived from parent.
func (g *group) addLoop(parent context.Context, name string, fn func(context.Context) error) {
	ctx, cancel := context.WithCancel(parent)
	g.add(name, func() error {
		err := fn(ctx)
		if err == nil && ctx.Err() == nil {
			err = errStoppedEarly
		}
		return err
	}, func(error) { cancel() })
}

// run runs the components and returns the error of the first to return,
// prefixed with its name (nil when it returned nil).
func (g *group) run() error {
	if len(g.actors) == 0 {
		return nil
	}
	type result struct {
		i   int
		err error
	}
	done := make(chan result, len(g.actors))
	for i, a := range g.actors {
		go func() { done <- result{i, a.execute()} }()
	}
	first := <-done
	returned := make([]bool, len(g.actors))
	returned[first.i] = true
	err := first.err
	if name := g.actors[first.i].name; err != nil {
		err = fmt.Errorf("%s: %w", name, err)
		g.log.Error("component failed: stopping all", "component", name, "err", first.err)
	} else {
		g.log.Debug("component returned: stopping all", "component", name)
	}
	for i := len(g.actors) - 1; i >= 0; i-- {
		if returned[i] {
			continue
		}
		g.actors[i].interrupt(err)
		for !returned[i] {
			r := <-done
			returned[r.i] = true
			if r.err != nil && r.i != i {
				g.log.Warn("component failed while stopping", "component", g.actors[r.i].name, "err", r.err)
			}
		}
	}
	return err
}
