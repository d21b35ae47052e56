package e2e

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// process is a child process of the suite (provider, proxy, later
// redis-server or nginx) with its output captured. It runs in its own process
// group; the test's cleanup stops the group, so nothing outlives the test.
type process struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer   // stdout and stderr, interleaved
	done chan struct{} // closed when the process has exited
	err  error         // exit status, valid after done
}

// startProcess starts cmd and registers a cleanup that stops it (SIGTERM,
// then SIGKILL after stopTimeout) and, if t failed, logs its output.
func startProcess(t *testing.T, name string, cmd *exec.Cmd) *process {
	t.Helper()
	p := &process{name: name, cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout = p.out
	cmd.Stderr = p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.stop(stopTimeout)
		if t.Failed() {
			t.Logf("--- output of %s (%s) ---\n%s", name, strings.Join(cmd.Args, " "), p.out.String())
		}
	})
	return p
}

// stopTimeout bounds a graceful stop before the process group is killed.
const stopTimeout = hangTimeout

// hangTimeout bounds every wait for something that is certain to happen (a
// process getting ready, an event or log line being printed, a stream
// ending): only a hang reaches it. It is minutes, not seconds, because a
// machine running the race detector under other load can be many times
// slower than a developer's; no test asserts how fast these things happen.
const hangTimeout = 2 * time.Minute

// stop sends SIGTERM to the process group and waits up to timeout for the
// process to exit, then kills the group. It returns the exit status (nil for
// exit code 0) or an error saying it had to be killed.
func (p *process) stop(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("%s did not exit within %s of SIGTERM; killed", p.name, timeout)
	}
}

// exited reports whether the process has exited, and how.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// waitFor polls ready every 100ms until it returns nil, the process exits or
// timeout passes; it fails t in the last two cases.
func (p *process) waitFor(t *testing.T, what string, timeout time.Duration, ready func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := ready()
		if err == nil {
			return
		}
		if gone, exitErr := p.exited(); gone {
			t.Fatalf("%s exited (%v) before %s:\n%s", p.name, exitErr, what, p.out.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %s within %s: %v\n%s", p.name, what, timeout, err, p.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitOutput waits until the process's output holds want. The proxy
// writes its log in batches (AUTHPROXY_LOG_BUFFER), so a line is certain to
// appear but not at once: never read the output once for a line.
func (p *process) waitOutput(t *testing.T, want string) {
	t.Helper()
	p.waitFor(t, fmt.Sprintf("%q in the output", want), hangTimeout, func() error {
		if !strings.Contains(p.out.String(), want) {
			return fmt.Errorf("not yet")
		}
		return nil
	})
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a child's
// stdout and stderr and the test's reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
