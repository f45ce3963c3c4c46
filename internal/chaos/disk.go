package chaos

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// DiskConfig is the SQLite disk scenario.
type DiskConfig struct {
	Size    int64
	MsgSize int
	Latency time.Duration
}

func (c *DiskConfig) flags(fs *flag.FlagSet) {
	fs.Int64Var(&c.Size, "size", 16<<20, "bytes of the tmpfs the SQLite store lives on")
	fs.IntVar(&c.MsgSize, "message-bytes", 16<<10, "bytes of each chat message (what fills the disk)")
	fs.DurationVar(&c.Latency, "latency", 10*time.Millisecond, "the simulated model's latency")
}

// RunDisk puts the SQLite store on a small tmpfs (mounted here: needs
// root), fills it with chats until writes fail, then frees space and
// checks recovery, restarts agentd and checks every acknowledged chat is
// still there. Then it gives `agentd restore` corrupt backups and a valid
// backup with no room to copy it: each must fail with a clear error and
// leave the store byte for byte as it was.
func RunDisk(ctx context.Context, e *Env, cfg DiskConfig) error {
	t0 := time.Now()
	disk := filepath.Join(e.Dir, "disk")
	if err := os.MkdirAll(disk, 0o755); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", cfg.Size), "tmpfs", disk).CombinedOutput(); err != nil {
		return fmt.Errorf("disk: mount a %d-byte tmpfs (needs root): %v: %s", cfg.Size, err, out)
	}
	e.onClose(func() { _ = exec.Command("umount", "-l", disk).Run() })
	sim, err := e.StartSim(ctx, cfg.Latency)
	if err != nil {
		return err
	}
	storePath := filepath.Join(disk, "agentd.db")
	cfgPath, err := e.Config("sqlite://"+storePath, "", sim.Base(), "http://127.0.0.1:9/unused")
	if err != nil {
		return err
	}
	srv, err := e.Serve(ctx, "serve1", cfgPath, "all")
	if err != nil {
		return err
	}
	// Leave about 1 MB free: the chats fill the rest.
	filler := filepath.Join(disk, "filler")
	var st syscall.Statfs_t
	if err := syscall.Statfs(disk, &st); err != nil {
		return err
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	if err := writeFiller(filler, free-(1<<20)); err != nil {
		return err
	}
	e.Logf("disk: agentd on a %d-byte tmpfs, 1 MB left free (up in %s)", cfg.Size, time.Since(t0).Round(time.Millisecond))

	// Chats until 5 in a row fail.
	var acked []string
	errorsSeen := map[string]int{}
	var firstErr string
	fails := 0
	for i := 0; fails < 5 && i < 2000; i++ {
		code, convID, body := chatOnce(ctx, srv.Base(), fmt.Sprintf("disk chat %d: %s", i, strings.Repeat("x", cfg.MsgSize)))
		if code == http.StatusOK {
			acked = append(acked, convID)
			fails = 0
			continue
		}
		fails++
		errorsSeen[fmt.Sprintf("%d", code)]++
		if firstErr == "" {
			firstErr = fmt.Sprintf("%d %s", code, body)
		}
	}
	healthFull := getBody(srv.Base() + "/healthz")
	e.Logf("disk: full after %d acknowledged chats; first refusal: %s", len(acked), firstErr)

	// Space back: agentd recovers without a restart.
	if err := os.Remove(filler); err != nil {
		return err
	}
	recovered := 0
	for i := range 5 {
		if code, convID, _ := chatOnce(ctx, srv.Base(), fmt.Sprintf("disk chat after %d: hello", i)); code == http.StatusOK {
			recovered++
			acked = append(acked, convID)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Restart: every acknowledged chat is still there.
	srv.Signal(syscall.SIGTERM)
	if err := srv.Start(); err != nil {
		return err
	}
	if err := WaitHTTP(ctx, srv.Base()+"/readyz", 60*time.Second, srv); err != nil {
		return err
	}
	lost := 0
	for _, id := range acked {
		if n, err := conversationLen(ctx, srv.Base(), id); err != nil || n < 2 {
			lost++
		}
	}
	srv.Signal(syscall.SIGTERM)

	// Restore: corrupt backups and a valid one with no room to copy it.
	backup := filepath.Join(e.Dir, "backup.db")
	if out, err := exec.CommandContext(ctx, e.Bin, "backup", "-config", cfgPath, backup).CombinedOutput(); err != nil {
		return fmt.Errorf("disk: agentd backup: %v: %s", err, out)
	}
	raw, err := os.ReadFile(backup)
	if err != nil {
		return err
	}
	cases := map[string][]byte{
		"truncated": raw[:len(raw)/2],
		"garbage":   bytes.Repeat([]byte("not a database "), 1000),
		"bad-pages": corruptPages(raw),
		"empty":     {},
	}
	restoreOK, restoreBad := 0, 0
	var msgs []string
	for name, b := range cases {
		p := filepath.Join(e.Dir, "corrupt-"+name+".db")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
		ok, msg, err := restoreRefused(ctx, e.Bin, cfgPath, storePath, p)
		if err != nil {
			return err
		}
		if ok {
			restoreOK++
		} else {
			restoreBad++
		}
		msgs = append(msgs, name+": "+msg)
	}
	// A valid backup, but the disk has no room for the copy.
	if err := syscall.Statfs(disk, &st); err != nil {
		return err
	}
	if err := writeFiller(filler, int64(st.Bavail)*int64(st.Bsize)); err != nil {
		return err
	}
	ok, msg, err := restoreRefused(ctx, e.Bin, cfgPath, storePath, backup)
	if err != nil {
		return err
	}
	if ok {
		restoreOK++
	} else {
		restoreBad++
	}
	msgs = append(msgs, "valid backup on a full disk: "+msg)
	_ = os.Remove(filler)
	for _, m := range msgs {
		e.Logf("disk: restore refused: %s", m)
	}

	// Every refusal is the clear one: 507 store_full.
	pass := len(acked) > 0 && errorsSeen["507"] > 0 && len(errorsSeen) == 1 && strings.Contains(firstErr, "store_full") &&
		lost == 0 && recovered == 5 && restoreBad == 0
	verdict := "PASS"
	if !pass {
		verdict = "FAIL"
	}
	var hs struct {
		Status string `json:"status"`
	}
	_ = json.Unmarshal([]byte(healthFull), &hs)
	fmt.Fprintf(e.Out, "disk %s tmpfs=%d acknowledged_chats=%d refusals_by_status=%v first_refusal=%q healthz_when_full=%s "+
		"recovered_after_space_freed=%d/5 lost_after_restart=%d restore_refused_cleanly=%d/%d wall=%s\n",
		verdict, cfg.Size, len(acked), errorsSeen, truncate(firstErr, 200), hs.Status, recovered, lost, restoreOK, restoreOK+restoreBad,
		time.Since(t0).Round(time.Second))
	if !pass {
		return errVerdict
	}
	return nil
}

// restoreRefused runs agentd restore of from and reports whether it failed
// with a message and left the store (and no kept copy) as it was.
func restoreRefused(ctx context.Context, bin, cfgPath, storePath, from string) (bool, string, error) {
	before, err := fileSum(storePath)
	if err != nil {
		return false, "", err
	}
	keptBefore, _ := filepath.Glob(storePath + ".before-restore-*")
	out, rerr := exec.CommandContext(ctx, bin, "restore", "-config", cfgPath, from).CombinedOutput()
	after, err := fileSum(storePath)
	keptAfter, _ := filepath.Glob(storePath + ".before-restore-*")
	msg := strings.TrimSpace(string(out))
	ok := rerr != nil && err == nil && before == after && len(keptAfter) == len(keptBefore) && strings.Contains(msg, "restore")
	if !ok {
		msg = fmt.Sprintf("NOT CLEAN (exit err %v, store changed %v, kept %d→%d): %s", rerr, before != after, len(keptBefore), len(keptAfter), msg)
	}
	return ok, truncate(msg, 240), nil
}

func fileSum(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return fmt.Sprintf("%x", h.Sum(nil)), nil
}

// corruptPages overwrites the middle of every other page after the first.
func corruptPages(b []byte) []byte {
	out := bytes.Clone(b)
	for off := 4096; off+4096 <= len(out); off += 8192 {
		copy(out[off+100:off+400], bytes.Repeat([]byte{0xA5}, 300))
	}
	return out
}

// writeFiller writes n bytes (stops quietly when the disk is full).
func writeFiller(path string, n int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for n > 0 {
		k := min(int64(len(buf)), n)
		if _, err := f.Write(buf[:k]); err != nil {
			return nil // full
		}
		n -= k
	}
	return nil
}

// chatOnce posts a chat and returns the status, the conversation id and
// the body.
func chatOnce(ctx context.Context, base, message string) (int, string, string) {
	body, _ := json.Marshal(map[string]string{"agent": "demo", "message": message})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/chat", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err.Error()
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var a struct {
		ConversationID string `json:"conversation_id"`
	}
	_ = json.Unmarshal(raw, &a)
	return resp.StatusCode, a.ConversationID, string(bytes.TrimSpace(raw))
}

func getBody(url string) string {
	resp, err := client.Get(url)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
