package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/agentd/agentd/internal/chaos"
)

// cmdChaos is `agentd chaos SCENARIO [flags]` (internal/chaos): the child
// processes run this same binary.
func cmdChaos(ctx context.Context, args []string, stdout io.Writer) error {
	bin, err := os.Executable()
	if err != nil {
		return fmt.Errorf("chaos: the agentd binary: %w", err)
	}
	return chaos.Main(ctx, args, stdout, bin)
}
