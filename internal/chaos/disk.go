package chaos

import (
	"context"
	"flag"
	"fmt"
	"time"
)

// DiskConfig is the SQLite disk scenario.
type DiskConfig struct {
	Limit int64
}

func (c *DiskConfig) flags(fs *flag.FlagSet) {
	fs.Int64Var(&c.Limit, "limit", 4<<20, "bytes the SQLite tier's filesystem holds")
}

// RunDisk is not written yet.
func RunDisk(ctx context.Context, e *Env, cfg DiskConfig) error {
	_ = ctx
	_ = time.Second
	return fmt.Errorf("disk: not built yet")
}
