package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store/sqlite"
)

// backupConfig is a serve config on the SQLite file dbPath with the
// in-process simulator ("  addr: ADDR" is replaced by startServe).
func backupConfig(storeURL string) string {
	return fmt.Sprintf(`server:
  addr: ADDR
  drain_timeout: 10s
  drain_delay: 1ms
store:
  url: %s
providers:
  anthropic:
    simulate: always
auth:
  mode: none
log:
  level: warn
agents:
  - name: demo
    model: claude-sonnet-4-5
    tools: [calculator, word_count]
`, storeURL)
}

// chat sends one message and returns the conversation id.
func chat(t *testing.T, base, message string) string {
	t.Helper()
	resp, err := http.Post(base+"/v1/chat", "application/json",
		strings.NewReader(fmt.Sprintf(`{"agent":"demo","message":%q}`, message)))
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "body: %s", body)
	m := map[string]any{}
	require.NoError(t, json.Unmarshal(body, &m))
	id, _ := m["conversation_id"].(string)
	require.NotEmpty(t, id)
	return id
}

func statusOf(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func deleteConversation(t *testing.T, base, id string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodDelete, base+"/v1/conversations/"+id, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
}

// TestBackupRestoreSQLite: data written through a running agentd is backed
// up online, changed and deleted, and comes back with restore.
func TestBackupRestoreSQLite(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "data", "agentd.db")
	require.NoError(t, os.MkdirAll(filepath.Dir(dbPath), 0o750))
	storeURL := "sqlite://" + filepath.ToSlash(dbPath)
	config := backupConfig(storeURL)
	cfgPath := writeConfig(t, strings.Replace(config, "  addr: ADDR\n", "  addr: 127.0.0.1:1\n", 1))

	s := startServe(t, config, nil)
	kept := chat(t, s.base, "What is 6 times 7? Use the calculator.")
	before := getJSON(t, s.base+"/v1/conversations/"+kept)
	runID, err := submitRun(s.base, "How many words are in this sentence? Use word_count.")
	require.NoError(t, err)
	runs := waitAllTerminal(t, s.base, []string{runID}, 30*time.Second)
	require.Equal(t, "succeeded", runs[runID].Status)
	runBefore := getJSON(t, s.base+"/v1/runs/"+runID)

	// Online backup while agentd serves.
	backupPath := filepath.Join(dir, "backups", "agentd-1.db")
	require.NoError(t, os.MkdirAll(filepath.Dir(backupPath), 0o750))
	out, stderr, err := runCmd(t, nil, "backup", "-config", cfgPath, backupPath)
	require.NoError(t, err, stderr)
	require.Regexp(t, `backed up .* schema version [1-9][0-9]*, [1-9][0-9]* conversations, [1-9][0-9]* runs`, out)
	_, _, err = runCmd(t, nil, "backup", "-config", cfgPath, backupPath)
	require.ErrorContains(t, err, "exists", "an existing backup is not overwritten without -force")
	_, _, err = runCmd(t, nil, "backup", "-config", cfgPath, "-force", backupPath)
	require.NoError(t, err)

	// After the backup: a new conversation, and the old one deleted.
	lost := chat(t, s.base, "Hello after the backup")
	deleteConversation(t, s.base, kept)
	require.Equal(t, http.StatusNotFound, statusOf(t, s.base+"/v1/conversations/"+kept))

	// Restore refuses while agentd has the store open.
	_, _, err = runCmd(t, nil, "restore", "-config", cfgPath, backupPath)
	require.ErrorIs(t, err, sqlite.ErrInUse)
	s.stop(t)

	out, stderr, err = runCmd(t, nil, "restore", "-config", cfgPath, backupPath)
	require.NoError(t, err, stderr)
	require.Contains(t, out, "restored "+dbPath)
	require.Contains(t, out, "before-restore-")
	for _, suffix := range []string{"-wal", "-shm"} {
		_, err := os.Stat(dbPath + suffix)
		require.ErrorIs(t, err, os.ErrNotExist, "stale %s removed", suffix)
	}
	old, err := filepath.Glob(dbPath + ".before-restore-*")
	require.NoError(t, err)
	require.Len(t, old, 1, "the replaced store is kept")

	s2 := startServe(t, config, nil)
	require.Equal(t, before, getJSON(t, s2.base+"/v1/conversations/"+kept), "the deleted conversation is back")
	require.Equal(t, http.StatusNotFound, statusOf(t, s2.base+"/v1/conversations/"+lost), "what came after the backup is gone")
	runAfter := getJSON(t, s2.base+"/v1/runs/"+runID)
	require.Equal(t, runBefore["status"], runAfter["status"])
	require.Equal(t, runBefore["output"], runAfter["output"])
	// The restored store takes writes.
	chat(t, s2.base, "Hello after the restore")
	s2.stop(t)
}

func TestBackupRestoreRefusals(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pg := writeConfig(t, "store:\n  url: postgres://u:secret@127.0.0.1:1/db\nagents:\n  - name: a\n    model: m\n")
	for _, cmd := range []string{"backup", "restore"} {
		_, _, err := runCmd(t, nil, cmd, "-config", pg, filepath.Join(dir, "x.db"))
		require.ErrorContains(t, err, "pg_dump", cmd)
		require.NotContains(t, err.Error(), "secret", "no password in the message")
	}

	dbPath := filepath.Join(dir, "s.db")
	cfg := writeConfig(t, "store:\n  url: sqlite://"+filepath.ToSlash(dbPath)+"\nagents:\n  - name: a\n    model: m\n")
	_, _, err := runCmd(t, nil, "backup", "-config", cfg, filepath.Join(dir, "b.db"))
	require.Error(t, err, "no store file yet: nothing to back up")
	_, err = os.Stat(dbPath)
	require.ErrorIs(t, err, os.ErrNotExist, "backup did not create an empty store")

	_, _, err = runCmd(t, nil, "backup", "-config", cfg)
	require.ErrorIs(t, err, errUsage)
	_, _, err = runCmd(t, nil, "restore", "-config", cfg)
	require.ErrorIs(t, err, errUsage)

	junk := filepath.Join(dir, "junk.db")
	require.NoError(t, os.WriteFile(junk, []byte("not a database"), 0o600))
	_, _, err = runCmd(t, nil, "restore", "-config", cfg, junk)
	require.ErrorContains(t, err, "not a usable agentd backup")
	_, err = os.Stat(dbPath)
	require.ErrorIs(t, err, os.ErrNotExist, "a refused restore touches nothing")

	// Restore onto a missing store: creates it (first restore on a new host).
	_, stderr, err := runCmd(t, nil, "migrate", "-config", cfg)
	require.NoError(t, err, stderr)
	good := filepath.Join(dir, "good.db")
	_, stderr, err = runCmd(t, nil, "backup", "-config", cfg, good)
	require.NoError(t, err, stderr)
	cfg2 := writeConfig(t, "store:\n  url: sqlite://"+filepath.ToSlash(filepath.Join(dir, "new", "n.db"))+"\nagents:\n  - name: a\n    model: m\n")
	out, stderr, err := runCmd(t, nil, "restore", "-config", cfg2, good)
	require.NoError(t, err, stderr)
	require.NotContains(t, out, "before-restore", "nothing was replaced")
	_, err = os.Stat(filepath.Join(dir, "new", "n.db"))
	require.NoError(t, err)
}

// TestPostgresDumpRestoreDrill is the PostgreSQL drill of
// docs/runbooks/restore-from-backup.md: pg_dump -Fc of a store written by
// agentd, data lost, pg_restore, agentd serves the data again.
func TestPostgresDumpRestoreDrill(t *testing.T) {
	base := os.Getenv("AGENTD_TEST_POSTGRES_URL")
	if base == "" {
		t.Skip("AGENTD_TEST_POSTGRES_URL not set")
	}
	pgDump, err1 := exec.LookPath("pg_dump")
	pgRestore, err2 := exec.LookPath("pg_restore")
	psql, err3 := exec.LookPath("psql")
	if err1 != nil || err2 != nil || err3 != nil {
		t.Skip("pg_dump, pg_restore or psql not installed")
	}
	storeURL := pgSchema(t, base)
	schema := ""
	for _, kv := range strings.Split(storeURL[strings.Index(storeURL, "?")+1:], "&") {
		if v, ok := strings.CutPrefix(kv, "search_path="); ok {
			schema = v
		}
	}
	require.NotEmpty(t, schema)
	// libpq does not know pgx's pool_max_conns / search_path parameters.
	libpq := base

	config := backupConfig(storeURL)
	s := startServe(t, config, nil)
	conv := chat(t, s.base, "What is 2 plus 2? Use the calculator.")
	before := getJSON(t, s.base+"/v1/conversations/"+conv)
	runID, err := submitRun(s.base, "Count the words here. Use word_count.")
	require.NoError(t, err)
	waitAllTerminal(t, s.base, []string{runID}, 30*time.Second)
	s.stop(t)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dump := filepath.Join(t.TempDir(), "agentd.dump")
	out, err := exec.CommandContext(ctx, pgDump, "--format=custom", "--no-owner", "--schema="+schema,
		"--dbname="+libpq, "--file="+dump).CombinedOutput()
	require.NoError(t, err, "pg_dump: %s", out)

	// Disaster: the data is gone.
	out, err = exec.CommandContext(ctx, psql, "-v", "ON_ERROR_STOP=1", "-q", "-d", libpq, "-c",
		fmt.Sprintf(`DROP SCHEMA %q CASCADE; CREATE SCHEMA %q;`, schema, schema)).CombinedOutput()
	require.NoError(t, err, "psql: %s", out)

	out, err = exec.CommandContext(ctx, pgRestore, "--no-owner", "--exit-on-error", "--clean", "--if-exists",
		"--dbname="+libpq, dump).CombinedOutput()
	require.NoError(t, err, "pg_restore: %s", out)

	s2 := startServe(t, config, nil)
	require.Equal(t, before, getJSON(t, s2.base+"/v1/conversations/"+conv))
	run := getJSON(t, s2.base+"/v1/runs/"+runID)
	require.Equal(t, "succeeded", run["status"])
	chat(t, s2.base, "and the restored store takes writes")
	s2.stop(t)
}
