package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"time"
)

// checkpointInterval is how often the checkpointer copies the WAL into the
// database file.
const checkpointInterval = 250 * time.Millisecond

// checkpointer copies the WAL into the database file (a PASSIVE
// checkpoint) every checkpointInterval, on a connection of its own.
//
// SQLite's automatic checkpoint runs inside the COMMIT that takes the WAL
// past 1,000 pages, on the committing connection: here the one write
// connection, while the commit group holds it. A checkpoint syncs the WAL
// and then the database file, two fsync calls of a few milliseconds each,
// and every writer queued behind it (a chat's turn, a run's step) waited
// for them: at 400 chats/s on one core that was 13 checkpoints a second
// and most of /v1/chat's tail (docs/benchmarks.md, round 9). The write
// connection therefore runs with wal_autocheckpoint(0), and this goroutine
// checkpoints instead. A PASSIVE checkpoint takes no lock a writer or a
// reader needs: writers go on appending to the WAL meanwhile, and the next
// writer after a complete checkpoint starts the WAL over from its
// beginning, as after an automatic one. A checkpoint with nothing to copy
// does no I/O.
type checkpointer struct {
	db   *sql.DB // one connection; closed by stop
	stop chan struct{}
	done chan struct{}
}

// startCheckpointer starts checkpointing the database at path.
func startCheckpointer(ctx context.Context, path string) (*checkpointer, error) {
	db, err := sql.Open("sqlite", dsn(path, "_pragma=busy_timeout(5000)"))
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	c := &checkpointer{db: db, stop: make(chan struct{}), done: make(chan struct{})}
	go c.run()
	return c, nil
}

func (c *checkpointer) run() {
	defer close(c.done)
	t := time.NewTicker(checkpointInterval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		err := c.checkpoint()
		switch {
		case err != nil && !failing:
			// Once per failing spell: the next tick tries again, and the
			// WAL keeps every commit meanwhile.
			slog.Warn("sqlite: WAL checkpoint failed", "err", err)
		case err == nil && failing:
			slog.Info("sqlite: WAL checkpoints succeed again")
		}
		failing = err != nil
	}
}

// checkpoint runs one PASSIVE checkpoint.
func (c *checkpointer) checkpoint() error {
	var busy, frames, copied int
	if err := c.db.QueryRow(`PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &copied); err != nil {
		return fmt.Errorf("sqlite: wal checkpoint: %w", err)
	}
	return nil
}

// close stops the goroutine and closes its connection.
func (c *checkpointer) close() error {
	close(c.stop)
	<-c.done
	return c.db.Close()
}
