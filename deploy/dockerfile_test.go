package deploy

import (
	"encoding/json"
	"errors"
	"fmt"
	"go/build"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	line int
	cmd  string // upper case: FROM, RUN, ...
	args string
}

// stage is one FROM and what follows it.
type stage struct {
	image, name string
	ins         []instruction
}

// dockerfile is the parsed repository Dockerfile. No Docker engine runs
// here, so this reads the file the way the builder would, for the subset of
// the syntax the file uses.
type dockerfile struct {
	stages []stage
}

func parseDockerfile(t *testing.T, name string) dockerfile {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var df dockerfile
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		// Comments and blank lines are dropped, also inside continuations.
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if body, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		cur.Reset()
		in := instruction{line: start, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			f = slices.DeleteFunc(f, func(s string) bool { return strings.HasPrefix(s, "--") })
			if len(f) == 0 {
				t.Fatalf("%s:%d: FROM without an image", name, in.line)
			}
			st := stage{image: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			}
			df.stages = append(df.stages, st)
			continue
		}
		if len(df.stages) == 0 {
			if in.cmd == "ARG" {
				t.Fatalf("%s:%d: ARG before FROM: this test does not expand it", name, in.line)
			}
			t.Fatalf("%s:%d: %s before FROM", name, in.line, in.cmd)
		}
		last := &df.stages[len(df.stages)-1]
		last.ins = append(last.ins, in)
	}
	if cur.Len() > 0 {
		t.Fatalf("%s: ends inside a continuation", name)
	}
	if len(df.stages) == 0 {
		t.Fatalf("%s: no FROM", name)
	}
	return df
}

// all returns the stage's instructions of kind cmd.
func (s stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range s.ins {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// execForm decodes a JSON-array (exec form) argument, which needs no shell.
func execForm(args string) ([]string, error) {
	var argv []string
	if err := json.Unmarshal([]byte(args), &argv); err != nil || len(argv) == 0 {
		return nil, fmt.Errorf("%q is not exec form (a JSON array): the runtime image has no shell", args)
	}
	return argv, nil
}

// shellWords splits a RUN line into words, honouring quotes, and cuts it
// into commands at && and ;.
func shellWords(s string) ([][]string, error) {
	var cmds [][]string
	var words []string
	var w strings.Builder
	inWord := false
	var quote rune
	flush := func() {
		if inWord {
			words = append(words, w.String())
			w.Reset()
			inWord = false
		}
	}
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				w.WriteRune(r)
			}
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			flush()
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, errors.New("unterminated quote")
	}
	flush()
	var cur []string
	for _, word := range words {
		if word == "&&" || word == ";" {
			cmds = append(cmds, cur)
			cur = nil
			continue
		}
		cur = append(cur, word)
	}
	return append(cmds, cur), nil
}

// goBuild is the `go build` command of the builder stage.
type goBuild struct {
	stage    int               // index of its stage
	env      map[string]string // leading NAME=value words and the stage's ENV
	flags    map[string]string // -trimpath: "", -o: "/out/authproxy"
	pkg      string
	argNames []string // ARGs declared in the stage before the RUN
}

func findGoBuild(t *testing.T, df dockerfile) goBuild {
	t.Helper()
	valueFlags := map[string]bool{"-o": true, "-ldflags": true, "-gcflags": true, "-tags": true, "-mod": true, "-p": true, "-buildmode": true, "-pgo": true}
	var found []goBuild
	for si, st := range df.stages {
		env := map[string]string{}
		var args []string
		for _, in := range st.ins {
			switch in.cmd {
			case "ENV":
				for _, kv := range strings.Fields(in.args) {
					if k, v, ok := strings.Cut(kv, "="); ok {
						env[k] = v
					}
				}
			case "ARG":
				n, _, _ := strings.Cut(in.args, "=")
				args = append(args, n)
			case "RUN":
				cmds, err := shellWords(in.args)
				if err != nil {
					t.Fatalf("Dockerfile:%d: %v", in.line, err)
				}
				for _, words := range cmds {
					b := goBuild{stage: si, env: maps.Clone(env), flags: map[string]string{}, argNames: slices.Clone(args)}
					for len(words) > 0 && strings.Contains(words[0], "=") && !strings.HasPrefix(words[0], "-") {
						k, v, _ := strings.Cut(words[0], "=")
						b.env[k] = v
						words = words[1:]
					}
					if len(words) < 2 || words[0] != "go" || words[1] != "build" {
						continue
					}
					for i := 2; i < len(words); i++ {
						w := words[i]
						if !strings.HasPrefix(w, "-") {
							b.pkg = w
							continue
						}
						w = "-" + strings.TrimLeft(w, "-") // --o and -o are one flag
						if k, v, ok := strings.Cut(w, "="); ok {
							b.flags[k] = v
						} else if valueFlags[w] && i+1 < len(words) {
							b.flags[w] = words[i+1]
							i++
						} else {
							b.flags[w] = ""
						}
					}
					found = append(found, b)
				}
			}
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one `go build` in the Dockerfile, found %d", len(found))
	}
	return found[0]
}

func TestDockerfile(t *testing.T) {
	p := readProxy(t)
	df := parseDockerfile(t, filepath.Join(repoRoot, "Dockerfile"))
	b := findGoBuild(t, df)
	builder := df.stages[b.stage]
	final := df.stages[len(df.stages)-1]
	// The binary's path in the final image: the destination of the COPY
	// that takes the go build output from the builder stage.
	binary := ""
	for _, in := range final.all("COPY") {
		f := strings.Fields(in.args)
		if len(f) == 3 && (f[0] == "--from="+builder.name || f[0] == "--from="+strconv.Itoa(b.stage)) && f[1] == b.flags["-o"] {
			binary = f[2]
			if strings.HasSuffix(binary, "/") {
				binary += path.Base(f[1])
			}
		}
	}
	entrypoint := []string{}
	if e := final.all("ENTRYPOINT"); len(e) > 0 {
		argv, err := execForm(e[len(e)-1].args)
		if err != nil {
			t.Fatal(err)
		}
		entrypoint = argv
	}

	for _, tc := range []struct {
		name  string
		check func(t *testing.T)
	}{
		{"builder Go is go.mod's", func(t *testing.T) {
			want := p.goVersion
			if p.toolchain != "" {
				want = p.toolchain // the version the project builds with
			}
			repo, tag, _ := strings.Cut(builder.image, ":")
			version, _, _ := strings.Cut(tag, "-") // 1.26.8-bookworm
			if path.Base(repo) != "golang" || version != want {
				t.Errorf("builder image %s, want golang:%s (go.mod)", builder.image, want)
			}
		}},
		{"static, trimmed build of cmd/authproxy", func(t *testing.T) {
			if b.env["CGO_ENABLED"] != "0" {
				t.Errorf("CGO_ENABLED=%q, want 0: the runtime image has no libc", b.env["CGO_ENABLED"])
			}
			if _, ok := b.flags["-trimpath"]; !ok {
				t.Error("no -trimpath")
			}
			if b.flags["-o"] == "" {
				t.Error("no -o: the output path must be explicit to be copied")
			}
			if filepath.Join(repoRoot, b.pkg) != filepath.Clean(cmdDir) {
				t.Errorf("builds %q, want ./cmd/authproxy", b.pkg)
			}
		}},
		{"version stamped through -ldflags", func(t *testing.T) {
			ld, err := shellWords(b.flags["-ldflags"])
			if err != nil || len(ld) != 1 {
				t.Fatalf("-ldflags %q", b.flags["-ldflags"])
			}
			var stamp string
			for i, w := range ld[0] {
				if w == "-X" && i+1 < len(ld[0]) {
					if v, ok := strings.CutPrefix(ld[0][i+1], "main.version="); ok {
						stamp = v
					}
				}
			}
			arg := strings.Trim(strings.TrimPrefix(stamp, "$"), "{}")
			if stamp == "" || !slices.Contains(b.argNames, arg) {
				t.Errorf("-ldflags %q: want -X main.version=${ARG} with the ARG declared in the builder stage", b.flags["-ldflags"])
			}
			if !p.versionVar {
				t.Error("cmd/authproxy has no package-level string var version for -X main.version")
			}
			if !p.subcommands["version"] {
				t.Error(`run has no "version" subcommand`)
			}
		}},
		{"entrypoint is the built binary", func(t *testing.T) {
			if binary == "" {
				t.Fatalf("the final stage copies no %s from the builder stage", b.flags["-o"])
			}
			if len(entrypoint) != 1 || entrypoint[0] != binary {
				t.Errorf("ENTRYPOINT %q, want [%q]", entrypoint, binary)
			}
		}},
		{"runtime is distroless static, non-root, shell-free", func(t *testing.T) {
			if !strings.HasPrefix(final.image, "gcr.io/distroless/static") {
				t.Errorf("runtime image %s, want gcr.io/distroless/static-*", final.image)
			}
			users := final.all("USER")
			if len(users) == 0 {
				t.Fatal("no USER in the final stage")
			}
			user, _, _ := strings.Cut(users[len(users)-1].args, ":")
			if user == "" || user == "root" || user == "0" {
				t.Errorf("USER %s: want a non-root user", users[len(users)-1].args)
			}
			for _, in := range final.ins {
				if in.cmd == "RUN" {
					t.Errorf("Dockerfile:%d: RUN in the runtime stage, which has no shell", in.line)
				}
				if (in.cmd == "CMD" || in.cmd == "ENTRYPOINT") && !strings.HasPrefix(in.args, "[") {
					t.Errorf("Dockerfile:%d: %s in shell form", in.line, in.cmd)
				}
			}
		}},
		{"exposes the proxy's default port", func(t *testing.T) {
			want := strconv.Itoa(port(t, p.env["AUTHPROXY_ADDR"]))
			exposed := false
			for _, in := range final.all("EXPOSE") {
				for _, f := range strings.Fields(in.args) {
					if strings.TrimSuffix(f, "/tcp") == want {
						exposed = true
					}
				}
			}
			if !exposed {
				t.Errorf("no EXPOSE %s (default AUTHPROXY_ADDR %q)", want, p.env["AUTHPROXY_ADDR"])
			}
		}},
		{"healthcheck runs the healthcheck subcommand", func(t *testing.T) {
			hc := final.all("HEALTHCHECK")
			if len(hc) != 1 {
				t.Fatalf("%d HEALTHCHECK instructions, want 1", len(hc))
			}
			_, cmd, ok := strings.Cut(hc[0].args, "CMD ")
			if !ok {
				t.Fatalf("HEALTHCHECK %q has no CMD", hc[0].args)
			}
			argv, err := execForm(strings.TrimSpace(cmd))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(argv, []string{binary, "healthcheck"}) {
				t.Errorf("HEALTHCHECK CMD %q, want [%q \"healthcheck\"]", argv, binary)
			}
			if !p.subcommands["healthcheck"] {
				t.Error(`run has no "healthcheck" subcommand`)
			}
		}},
	} {
		t.Run(tc.name, tc.check)
	}
}

// buildInputs lists, relative to the repository, what `go build
// ./cmd/authproxy` reads: go.mod, go.sum, and the Go and embedded files of
// every package of the module it imports, for the image's linux build.
func buildInputs(t *testing.T, p proxy) []string {
	t.Helper()
	ctx := build.Default
	ctx.GOOS, ctx.GOARCH, ctx.CgoEnabled = "linux", "amd64", false
	inputs := []string{"go.mod", "go.sum"}
	seen := map[string]bool{}
	queue := []string{"cmd/authproxy"}
	for len(queue) > 0 {
		dir := queue[0]
		queue = queue[1:]
		if seen[dir] {
			continue
		}
		seen[dir] = true
		pkg, err := ctx.ImportDir(filepath.Join(repoRoot, dir), 0)
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		for _, f := range pkg.GoFiles {
			inputs = append(inputs, path.Join(dir, f))
		}
		for _, pattern := range pkg.EmbedPatterns {
			inputs = append(inputs, path.Join(dir, strings.TrimPrefix(pattern, "all:")))
		}
		for _, imp := range pkg.Imports {
			if rel, ok := strings.CutPrefix(imp, p.modulePath+"/"); ok {
				queue = append(queue, rel)
			}
		}
	}
	return inputs
}

func TestDockerignore(t *testing.T) {
	p := readProxy(t)
	f, err := os.Open(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	ignored := func(name string) bool {
		t.Helper()
		m, err := pm.MatchesOrParentMatches(name)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}

	inputs := buildInputs(t, p)
	if !slices.Contains(inputs, "cmd/authproxy/main.go") {
		t.Fatalf("build inputs %v lack cmd/authproxy/main.go", inputs)
	}
	for _, tc := range []struct {
		paths []string
		want  bool
		why   string
	}{
		{inputs, false, "go build ./cmd/authproxy reads it"},
		{[]string{".git/HEAD", ".env", "e2e/provider/node_modules/x/index.js", "bin/authproxy"}, true, "it is large, local or secret"},
	} {
		for _, name := range tc.paths {
			if got := ignored(name); got != tc.want {
				t.Errorf("%s ignored: %v, want %v: %s", name, got, tc.want, tc.why)
			}
		}
	}
}
