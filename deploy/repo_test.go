// Package deploy holds no code: its tests keep the Kubernetes manifests in
// this directory and the repository's Dockerfile honest against the proxy's
// own source. It is a module of its own so that k8s.io/api and kustomize
// stay out of the proxy's go.mod.
package deploy

import (
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/mod/modfile"
)

// repoRoot is the authproxy module, the parent of this one.
const repoRoot = ".."

// cmdDir is the proxy's main package.
const cmdDir = repoRoot + "/cmd/authproxy"

// proxy is what the manifests and the Dockerfile must agree with, read from
// the proxy's source rather than restated here.
type proxy struct {
	// env maps each envconfig tag of the env struct to its default tag
	// ("" when it has none).
	env map[string]string
	// subcommands are the string cases of the switch in run.
	subcommands map[string]bool
	// versionVar: main has a package-level string var version, which
	// -ldflags "-X main.version=..." needs (-X ignores a missing one).
	versionVar bool
	// goVersion is the go line of go.mod; toolchain its toolchain line
	// without the "go" prefix, or "".
	goVersion, toolchain string
	modulePath           string
}

// readProxy parses cmd/authproxy (every non-test file: the env struct may
// move between files) and go.mod.
func readProxy(t *testing.T) proxy {
	t.Helper()
	p := proxy{env: map[string]string{}, subcommands: map[string]bool{}}

	entries, err := os.ReadDir(cmdDir)
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	foundEnv := false
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(cmdDir, name), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			switch d := decl.(type) {
			case *ast.GenDecl:
				for _, spec := range d.Specs {
					switch s := spec.(type) {
					case *ast.TypeSpec:
						if st, ok := s.Type.(*ast.StructType); ok && s.Name.Name == "env" {
							foundEnv = true
							readEnvTags(t, fset, st, p.env)
						}
					case *ast.ValueSpec:
						if d.Tok == token.VAR && isStringVar(s, "version") {
							p.versionVar = true
						}
					}
				}
			case *ast.FuncDecl:
				if d.Recv == nil && d.Name.Name == "run" {
					ast.Inspect(d.Body, func(n ast.Node) bool {
						if cc, ok := n.(*ast.CaseClause); ok {
							for _, x := range cc.List {
								if lit, ok := x.(*ast.BasicLit); ok && lit.Kind == token.STRING {
									if s, err := strconv.Unquote(lit.Value); err == nil {
										p.subcommands[s] = true
									}
								}
							}
						}
						return true
					})
				}
			}
		}
	}
	if !foundEnv || len(p.env) == 0 {
		t.Fatalf("no env struct with envconfig tags in %s", cmdDir)
	}

	data, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	mf, err := modfile.ParseLax("go.mod", data, nil)
	if err != nil {
		t.Fatal(err)
	}
	if mf.Go == nil || mf.Module == nil {
		t.Fatal("go.mod has no module or go line")
	}
	p.goVersion, p.modulePath = mf.Go.Version, mf.Module.Mod.Path
	if mf.Toolchain != nil {
		p.toolchain = strings.TrimPrefix(mf.Toolchain.Name, "go")
	}
	return p
}

func readEnvTags(t *testing.T, fset *token.FileSet, st *ast.StructType, into map[string]string) {
	t.Helper()
	for _, f := range st.Fields.List {
		if f.Tag == nil {
			t.Errorf("%s: env field without an envconfig tag", fset.Position(f.Pos()))
			continue
		}
		raw, err := strconv.Unquote(f.Tag.Value)
		if err != nil {
			t.Fatal(err)
		}
		tag := reflect.StructTag(raw)
		name := tag.Get("envconfig")
		if name == "" {
			t.Errorf("%s: env field without an envconfig tag", fset.Position(f.Pos()))
			continue
		}
		into[name] = tag.Get("default")
	}
}

// isStringVar reports whether s declares name as a string (by type or by a
// string literal value).
func isStringVar(s *ast.ValueSpec, name string) bool {
	for i, n := range s.Names {
		if n.Name != name {
			continue
		}
		if id, ok := s.Type.(*ast.Ident); ok {
			return id.Name == "string"
		}
		if s.Type == nil && i < len(s.Values) {
			lit, ok := s.Values[i].(*ast.BasicLit)
			return ok && lit.Kind == token.STRING
		}
	}
	return false
}

// knows reports whether authproxy reads name.
func (p proxy) knows(t *testing.T, name string) bool {
	t.Helper()
	_, ok := p.env[name]
	return ok
}

// port is the port of a host:port listen address such as ":9001".
func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n <= 0 || n > 65535 {
		t.Fatalf("listen address %q has no valid port", addr)
	}
	return n
}

func TestReadProxy(t *testing.T) {
	p := readProxy(t)
	// The facts every other test leans on: if these move, the tests must
	// follow the source, not silently check nothing.
	for _, name := range []string{"AUTHPROXY_ADDR", "AUTHPROXY_UPSTREAM", "AUTHPROXY_DRAIN_DELAY", "AUTHPROXY_SHUTDOWN_TIMEOUT"} {
		if _, ok := p.env[name]; !ok {
			t.Errorf("env struct has no %s tag", name)
		}
	}
	for _, cmd := range []string{"version", "healthcheck"} {
		if !p.subcommands[cmd] {
			t.Errorf("run has no %q case", cmd)
		}
	}
	if p.modulePath != "github.com/authproxy/authproxy" {
		t.Errorf("module path %q", p.modulePath)
	}
}
