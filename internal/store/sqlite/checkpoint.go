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

// restartFrames is the WAL's size, in frames (pages), past which the
// checkpointer finishes a checkpoint on the write connection so that the
// WAL starts over (16 MB of 4 KB pages).
const restartFrames = 4096

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
//
// Under sustained writes a checkpoint from another connection is never
// complete: frames are appended while it copies, so the WAL would never
// start over and would grow without bound (an earlier experiment found
// that, docs/benchmarks.md round 4). So once the WAL holds restartFrames,
// the checkpointer copies what its background passes left on the write
// connection itself, between two write transactions: the next write then
// starts the WAL over. That is a checkpoint on the writers' path again,
// but one per restartFrames pages instead of one per 1,000, and only of
// the frames written during the last background pass.
type checkpointer struct {
	db    *sql.DB // one connection; closed by close
	write *sql.DB // the store's write pool: the WAL's restarts
	// restart is the WAL's size in frames past which the WAL is made to
	// start over (restartFrames; tests lower it).
	restart int
	// life ends at close: a checkpoint waiting for the write connection
	// gives up.
	life context.Context
	stop context.CancelFunc
	done chan struct{}
}

// startCheckpointer starts checkpointing the database at path, whose
// write pool is write; see restartFrames for restart.
func startCheckpointer(ctx context.Context, path string, write *sql.DB, restart int) (*checkpointer, error) {
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
	c := &checkpointer{db: db, write: write, restart: restart, done: make(chan struct{})}
	c.life, c.stop = context.WithCancel(context.Background())
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
		case <-c.life.Done():
			return
		case <-t.C:
		}
		err := c.checkpoint()
		switch {
		case c.life.Err() != nil:
			return
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

// checkpoint runs one PASSIVE checkpoint, and finishes it on the write
// connection when the WAL is to start over (see checkpointer).
func (c *checkpointer) checkpoint() error {
	// frames and copied are as of the checkpoint's start: writers may
	// have appended since.
	frames, _, err := walCheckpoint(c.life, c.db)
	if err != nil || frames < c.restart {
		return err
	}
	// A second pass copies what was written during the first, so that
	// what is left for the write connection is only what is written
	// during the second: an fsync's time grows with the data it flushes
	// (on this project's test machine 0.2 ms for 16 pages, 4 ms for
	// 1,024), and the write connection's two are on the writers' path.
	if _, _, err := walCheckpoint(c.life, c.db); err != nil {
		return err
	}
	// Bounded: the write connection may be held by a long transaction;
	// the next tick tries again.
	ctx, cancel := context.WithTimeout(c.life, time.Second)
	defer cancel()
	_, _, err = walCheckpoint(ctx, c.write)
	return err
}

// walCheckpoint runs a PASSIVE checkpoint on db: frames is the WAL's size,
// copied how many of them are in the database file now.
func walCheckpoint(ctx context.Context, db *sql.DB) (frames, copied int, err error) {
	var busy int
	if err := db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &copied); err != nil {
		return 0, 0, fmt.Errorf("sqlite: wal checkpoint: %w", err)
	}
	return frames, copied, nil
}

// close stops the goroutine and closes its connection.
func (c *checkpointer) close() error {
	c.stop()
	<-c.done
	return c.db.Close()
}
