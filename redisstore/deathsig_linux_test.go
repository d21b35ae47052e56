package redisstore

import (
	"os/exec"
	"syscall"
)

// setDeathSignal kills the redis-server if the test binary dies before its
// cleanups run (a panic, a -timeout).
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
