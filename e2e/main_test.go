package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// e2eEnvVar turns the suite on; `make test` sets it.
const e2eEnvVar = "AUTHPROXY_E2E"

// binEnvVar, when set, names an authproxy binary to test instead of building
// ./cmd/authproxy (a release build, say).
const binEnvVar = "AUTHPROXY_E2E_BIN"

// suite is what TestMain prepares once per test binary run. It is the only
// package-level state: building the binary once is what keeps the suite fast.
var suite struct {
	enabled  bool   // AUTHPROXY_E2E=1
	repoRoot string // module root, the parent of this package
	bin      string // the authproxy binary built from ./cmd/authproxy
	buildErr error  // why the binary could not be built
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	suite.enabled = os.Getenv(e2eEnvVar) == "1"
	if !suite.enabled {
		return m.Run() // every test skips itself; see requireE2E
	}
	root, err := filepath.Abs("..")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	suite.repoRoot = root
	tmp, err := os.MkdirTemp("", "authproxy-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	if bin := os.Getenv(binEnvVar); bin != "" {
		suite.bin = bin
	} else {
		suite.bin, suite.buildErr = buildProxy(root, tmp)
	}
	return m.Run()
}

// buildProxy builds ./cmd/authproxy into dir; the build is bounded so that a
// stuck toolchain fails the suite rather than hanging it.
func buildProxy(root, dir string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := filepath.Join(dir, "authproxy")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/authproxy")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/authproxy: %w\n%s", err, out)
	}
	return bin, nil
}

// requireE2E skips t unless the suite is on, and fails it when the binary
// under test could not be built.
func requireE2E(t *testing.T) {
	t.Helper()
	if !suite.enabled {
		t.Skip("e2e suite: run `make test` (sets AUTHPROXY_E2E=1)")
	}
	if suite.buildErr != nil {
		t.Fatalf("e2e: cannot build the binary under test: %v", suite.buildErr)
	}
}

// requireNode fails t when Node.js or the provider's node_modules are missing,
// saying what to install.
func requireNode(t *testing.T) (node, dir string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("e2e: node not found on PATH: install Node.js >= 20.19 (Debian: apt-get install nodejs), or run `make test`")
	}
	out, err := exec.Command(node, "--version").Output()
	if err != nil {
		t.Fatalf("e2e: %s --version: %v", node, err)
	}
	if v := strings.TrimSpace(string(out)); !nodeVersionOK(v) {
		t.Fatalf("e2e: node %s is too old: oidc-provider 9 needs Node.js >= 20.19", v)
	}
	dir = filepath.Join(suite.repoRoot, "e2e", "provider")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "oidc-provider", "package.json")); err != nil {
		t.Fatalf("e2e: oidc-provider is not installed: run `npm ci` in e2e/provider (`make test` does it): %v", err)
	}
	return node, dir
}

// nodeVersionOK reports whether v ("v20.19.0") is at least 20.19.
func nodeVersionOK(v string) bool {
	var major, minor int
	if _, err := fmt.Sscanf(v, "v%d.%d", &major, &minor); err != nil {
		return false
	}
	return major > 20 || major == 20 && minor >= 19
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// requireTool fails t when the Go program name (pinned by
// e2e/tools/NAME/go.mod) has not been built into .cache/bin, saying how to
// build it, and returns its path.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	bin := filepath.Join(suite.repoRoot, ".cache", "bin", name)
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("e2e: %s is not built: run scripts/test-deps.sh (`make test` does it), which builds it as pinned by e2e/tools/%s/go.mod: %v", name, name, err)
	}
	return bin
}
