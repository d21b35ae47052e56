package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// proxyContainer is the name of the authproxy container in every
// Deployment here.
const proxyContainer = "authproxy"

// nonRootUID is the distroless nonroot user the image runs as.
const nonRootUID = 65532

// renderCase is a kustomization under deploy/ and what its rendered output
// must show.
type renderCase struct {
	dir string
	// sidecar: the pod runs the app too, and authproxy reaches it on
	// loopback. Otherwise authproxy runs alone and reaches a Service.
	sidecar bool
	// ingress: an Ingress terminates TLS in front of the proxy's Service.
	ingress bool
	// networkPolicy: a NetworkPolicy lets only authproxy reach the upstream.
	networkPolicy bool
	// appServices: every upstream (AUTHPROXY_UPSTREAM or each route's) is
	// a Service in the manifests, on the port the URL names.
	appServices bool
}

// kustomization is the part of kustomization.yaml these manifests use. It
// is decoded strictly: a field kustomize knows but this struct does not is
// an error, so add it here when a kustomization starts using it.
type kustomization struct {
	APIVersion         string      `json:"apiVersion"`
	Kind               string      `json:"kind"`
	Namespace          string      `json:"namespace,omitempty"`
	NamePrefix         string      `json:"namePrefix,omitempty"`
	NameSuffix         string      `json:"nameSuffix,omitempty"`
	Resources          []string    `json:"resources,omitempty"`
	Components         []string    `json:"components,omitempty"`
	Patches            []patch     `json:"patches,omitempty"`
	ConfigMapGenerator []generator `json:"configMapGenerator,omitempty"`
	SecretGenerator    []generator `json:"secretGenerator,omitempty"`
	Images             []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
		Digest  string `json:"digest,omitempty"`
	} `json:"images,omitempty"`
}

type patch struct {
	Path   string `json:"path,omitempty"`
	Patch  string `json:"patch,omitempty"`
	Target *struct {
		Group              string `json:"group,omitempty"`
		Version            string `json:"version,omitempty"`
		Kind               string `json:"kind,omitempty"`
		Name               string `json:"name,omitempty"`
		Namespace          string `json:"namespace,omitempty"`
		LabelSelector      string `json:"labelSelector,omitempty"`
		AnnotationSelector string `json:"annotationSelector,omitempty"`
	} `json:"target,omitempty"`
	Options map[string]bool `json:"options,omitempty"`
}

type generator struct {
	Name     string   `json:"name"`
	Behavior string   `json:"behavior,omitempty"`
	Type     string   `json:"type,omitempty"`
	Literals []string `json:"literals,omitempty"`
	Envs     []string `json:"envs,omitempty"`
	Files    []string `json:"files,omitempty"`
	Options  *struct {
		DisableNameSuffixHash bool              `json:"disableNameSuffixHash,omitempty"`
		Immutable             bool              `json:"immutable,omitempty"`
		Labels                map[string]string `json:"labels,omitempty"`
		Annotations           map[string]string `json:"annotations,omitempty"`
	} `json:"options,omitempty"`
}

// jsonPatchOp is one operation of an RFC 6902 patch file.
type jsonPatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	From  string `json:"from,omitempty"`
	Value any    `json:"value,omitempty"`
}

func isKustomization(path string) bool {
	switch filepath.Base(path) {
	case "kustomization.yaml", "kustomization.yml", "Kustomization":
		return true
	}
	return false
}

// yamlFiles lists every YAML file under deploy/, kustomizations included.
func yamlFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != "." && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		// Helm templates are not YAML until rendered: helm_test.go renders
		// and checks the chart.
		if d.IsDir() && path == helmDir {
			return filepath.SkipDir
		}
		if !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml") || isKustomization(path)) {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no YAML files under deploy/")
	}
	return files
}

// documents splits a YAML stream, dropping documents that hold only
// comments.
func documents(data []byte) ([][]byte, error) {
	r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		j, err := yaml.YAMLToJSONStrict(doc)
		if err != nil {
			return nil, err
		}
		if s := strings.TrimSpace(string(j)); s != "" && s != "null" {
			docs = append(docs, doc)
		}
	}
}

// newDecoder decodes YAML into the typed Kubernetes object its apiVersion
// and kind name, strictly: unknown or duplicate fields are errors, as with
// kubectl's server-side field validation. A kind not registered here is an
// error too.
func newDecoder(t *testing.T) runtime.Decoder {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		appsv1.AddToScheme, corev1.AddToScheme, networkingv1.AddToScheme,
		policyv1.AddToScheme, autoscalingv2.AddToScheme, monitoringv1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
}

// decodeDoc decodes one document: a JSON patch (a YAML sequence) into
// []jsonPatchOp, anything else into its Kubernetes type. Patches that are
// partial objects decode like whole ones, since every field is optional in
// the Go types.
func decodeDoc(dec runtime.Decoder, doc []byte) (runtime.Object, []jsonPatchOp, error) {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, nil, err
	}
	if bytes.HasPrefix(bytes.TrimSpace(j), []byte("[")) {
		var ops []jsonPatchOp
		if err := yaml.UnmarshalStrict(doc, &ops); err != nil {
			return nil, nil, err
		}
		for _, op := range ops {
			switch op.Op {
			case "add", "remove", "replace", "move", "copy", "test":
			default:
				return nil, nil, errors.New("JSON patch op " + op.Op + " is not one of RFC 6902's")
			}
			if !strings.HasPrefix(op.Path, "/") {
				return nil, nil, errors.New("JSON patch path " + op.Path + " does not start with /")
			}
		}
		return nil, ops, nil
	}
	obj, _, err := dec.Decode(doc, nil, nil)
	return obj, nil, err
}

func TestManifestsDecodeStrictly(t *testing.T) {
	dec := newDecoder(t)
	for _, file := range yamlFiles(t) {
		if isKustomization(file) {
			continue
		}
		t.Run(file, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			docs, err := documents(data)
			if err != nil {
				t.Fatal(err)
			}
			if len(docs) == 0 {
				t.Fatal("no YAML document")
			}
			for i, doc := range docs {
				if _, _, err := decodeDoc(dec, doc); err != nil {
					t.Errorf("document %d: %v", i+1, err)
				}
			}
		})
	}
}

func TestKustomizations(t *testing.T) {
	referenced := map[string]bool{}
	for _, file := range yamlFiles(t) {
		if !isKustomization(file) {
			continue
		}
		referenced[file] = true
		t.Run(file, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var k kustomization
			if err := yaml.UnmarshalStrict(data, &k); err != nil {
				t.Fatal(err)
			}
			if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
				t.Errorf("apiVersion %q kind %q", k.APIVersion, k.Kind)
			}
			dir := filepath.Dir(file)
			exists := func(what, rel string, wantDir bool) {
				t.Helper()
				p := filepath.Join(dir, rel)
				fi, err := os.Stat(p)
				switch {
				case err != nil:
					t.Errorf("%s %s: %v", what, rel, err)
				case wantDir && !fi.IsDir():
					t.Errorf("%s %s is not a directory", what, rel)
				case fi.IsDir() && !hasKustomization(p):
					t.Errorf("%s %s is a directory without a kustomization", what, rel)
				}
				referenced[filepath.Clean(p)] = true
			}
			for _, r := range k.Resources {
				exists("resource", r, false)
			}
			for _, c := range k.Components {
				exists("component", c, true)
			}
			for _, p := range k.Patches {
				if (p.Path == "") == (p.Patch == "") {
					t.Errorf("patch needs exactly one of path and patch: %+v", p)
				}
				if p.Path != "" {
					exists("patch", p.Path, false)
				}
			}
			for _, g := range slices.Concat(k.ConfigMapGenerator, k.SecretGenerator) {
				for _, f := range slices.Concat(g.Envs, g.Files) {
					if _, after, ok := strings.Cut(f, "="); ok { // files: key=path
						f = after
					}
					exists("generator "+g.Name+" source", f, false)
				}
			}
		})
	}
	// Every YAML file must be built by some kustomization; an orphan is a
	// manifest nobody renders, and it rots.
	for _, file := range yamlFiles(t) {
		if !referenced[file] {
			t.Errorf("%s is listed by no kustomization", file)
		}
	}
}

func hasKustomization(dir string) bool {
	for _, name := range []string{"kustomization.yaml", "kustomization.yml", "Kustomization"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return true
		}
	}
	return false
}

// objects is a rendered kustomization, by kind.
type objects struct {
	deployments     []*appsv1.Deployment
	services        []*corev1.Service
	configMaps      map[string]*corev1.ConfigMap
	secrets         map[string]*corev1.Secret
	ingresses       []*networkingv1.Ingress
	networkPolicies []*networkingv1.NetworkPolicy
	pdbs            []*policyv1.PodDisruptionBudget
	hpas            []*autoscalingv2.HorizontalPodAutoscaler
	serviceMonitors []*monitoringv1.ServiceMonitor
}

// render builds dir with kustomize, as `kubectl kustomize dir` does, and
// decodes the output strictly.
func render(t *testing.T, dec runtime.Decoder, dir string) objects {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := m.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	docs, err := documents(out)
	if err != nil {
		t.Fatal(err)
	}
	return collect(t, dec, docs)
}

// collect decodes rendered documents strictly and sorts them by kind.
func collect(t *testing.T, dec runtime.Decoder, docs [][]byte) objects {
	t.Helper()
	objs := objects{configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}
	for _, doc := range docs {
		obj, ops, err := decodeDoc(dec, doc)
		if err != nil || ops != nil {
			t.Fatalf("rendered document: %v\n%s", err, doc)
		}
		switch o := obj.(type) {
		case *appsv1.Deployment:
			objs.deployments = append(objs.deployments, o)
		case *corev1.Service:
			objs.services = append(objs.services, o)
		case *corev1.ConfigMap:
			objs.configMaps[o.Name] = o
		case *corev1.Secret:
			objs.secrets[o.Name] = o
		case *networkingv1.Ingress:
			objs.ingresses = append(objs.ingresses, o)
		case *networkingv1.NetworkPolicy:
			objs.networkPolicies = append(objs.networkPolicies, o)
		case *policyv1.PodDisruptionBudget:
			objs.pdbs = append(objs.pdbs, o)
		case *autoscalingv2.HorizontalPodAutoscaler:
			objs.hpas = append(objs.hpas, o)
		case *monitoringv1.ServiceMonitor:
			objs.serviceMonitors = append(objs.serviceMonitors, o)
		default:
			t.Fatalf("rendered %T: add a check for it", obj)
		}
	}
	return objs
}

// proxyEnv is the environment the authproxy container starts with.
type proxyEnv struct {
	values   map[string]string // as the container sees them
	defaults map[string]string // from the env struct's default tags
	// upstreams: AUTHPROXY_UPSTREAM, or every route's upstream.
	upstreams []*url.URL
}

// get is the effective value of name: set in the manifests, else the
// proxy's default.
func (e proxyEnv) get(name string) string {
	if v, ok := e.values[name]; ok {
		return v
	}
	return e.defaults[name]
}

// containerEnv resolves c's envFrom and env, checking every name against
// the proxy's configuration.
func containerEnv(t *testing.T, p proxy, objs objects, c *corev1.Container) proxyEnv {
	t.Helper()
	env := proxyEnv{values: map[string]string{}, defaults: p.env}
	set := func(source, name, value string, mustBeKnown bool) {
		t.Helper()
		if !p.knows(t, name) && (mustBeKnown || isProxyName(name)) {
			t.Errorf("%s sets %s, which authproxy does not read (not an envconfig tag in cmd/authproxy)", source, name)
		}
		env.values[name] = value
	}
	for _, from := range c.EnvFrom {
		optional := false
		switch {
		case from.ConfigMapRef != nil:
			optional = from.ConfigMapRef.Optional != nil && *from.ConfigMapRef.Optional
			cm, ok := objs.configMaps[from.ConfigMapRef.Name]
			if !ok {
				if !optional {
					t.Errorf("envFrom ConfigMap %q is not in the manifests", from.ConfigMapRef.Name)
				}
				continue
			}
			// envFrom passes every key: one authproxy does not read is
			// a typo or a stale setting.
			for k, v := range cm.Data {
				set("ConfigMap "+cm.Name, from.Prefix+k, v, true)
			}
		case from.SecretRef != nil:
			optional = from.SecretRef.Optional != nil && *from.SecretRef.Optional
			s, ok := objs.secrets[from.SecretRef.Name]
			if !ok {
				if !optional {
					t.Errorf("envFrom Secret %q is not in the manifests", from.SecretRef.Name)
				}
				continue
			}
			for k, v := range s.Data {
				set("Secret "+s.Name, from.Prefix+k, string(v), true)
			}
			for k, v := range s.StringData {
				set("Secret "+s.Name, from.Prefix+k, v, true)
			}
		}
	}
	for _, e := range c.Env {
		value := e.Value
		if from := e.ValueFrom; from != nil {
			value = valueFrom(t, objs, c.Name, e.Name, from)
		}
		set("container "+c.Name+" env", e.Name, value, false)
	}
	return env
}

// valueFrom resolves an env entry's secretKeyRef or configMapKeyRef: the
// object and the key must be in the manifests unless marked optional.
func valueFrom(t *testing.T, objs objects, container, name string, from *corev1.EnvVarSource) string {
	t.Helper()
	switch {
	case from.SecretKeyRef != nil:
		ref := from.SecretKeyRef
		if s, ok := objs.secrets[ref.Name]; ok {
			if v, ok := s.StringData[ref.Key]; ok {
				return v
			}
			if v, ok := s.Data[ref.Key]; ok {
				return string(v)
			}
		}
		if ref.Optional == nil || !*ref.Optional {
			t.Errorf("container %s env %s: Secret %s has no key %s in the manifests", container, name, ref.Name, ref.Key)
		}
	case from.ConfigMapKeyRef != nil:
		ref := from.ConfigMapKeyRef
		if cm, ok := objs.configMaps[ref.Name]; ok {
			if v, ok := cm.Data[ref.Key]; ok {
				return v
			}
		}
		if ref.Optional == nil || !*ref.Optional {
			t.Errorf("container %s env %s: ConfigMap %s has no key %s in the manifests", container, name, ref.Name, ref.Key)
		}
	default:
		t.Errorf("container %s env %s: valueFrom other than a Secret or ConfigMap key", container, name)
	}
	return ""
}

func isProxyName(name string) bool {
	return strings.HasPrefix(name, "AUTHPROXY_") || strings.HasPrefix(name, "AUTH0_")
}

func findContainer(spec *corev1.PodSpec, name string) *corev1.Container {
	for i := range spec.Containers {
		if spec.Containers[i].Name == name {
			return &spec.Containers[i]
		}
	}
	return nil
}

// resolvePort turns a probe's or a Service's port (number or name) into a
// number, looking names up in c.
func resolvePort(c *corev1.Container, p intstr.IntOrString) (int, bool) {
	if p.Type == intstr.Int {
		return p.IntValue(), true
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), true
		}
	}
	return 0, false
}

// selects reports whether a non-empty selector picks pods with labels.
func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestRendered(t *testing.T) {
	cases := []renderCase{
		{dir: "base", sidecar: true},
		{dir: "overlays/standalone", networkPolicy: true},
		{dir: "overlays/ingress-nginx", sidecar: true, ingress: true},
		{dir: "overlays/multi-app", networkPolicy: true, appServices: true},
	}
	p := readProxy(t)
	dec := newDecoder(t)

	for _, file := range yamlFiles(t) {
		dir := filepath.Dir(file)
		if isKustomization(file) && !slices.ContainsFunc(cases, func(c renderCase) bool { return c.dir == dir }) {
			t.Errorf("kustomization %s has no case in TestRendered", dir)
		}
	}

	for _, tc := range cases {
		t.Run(tc.dir, func(t *testing.T) {
			objs := render(t, dec, tc.dir)
			if len(objs.deployments) == 0 {
				t.Fatal("no Deployment")
			}
			envs := map[string]proxyEnv{} // by Deployment name
			for _, d := range objs.deployments {
				envs[d.Name] = checkDeployment(t, p, objs, d, tc.sidecar)
			}
			if got := len(objs.ingresses) > 0; got != tc.ingress {
				t.Errorf("has Ingress: %v, want %v", got, tc.ingress)
			}
			if tc.ingress {
				checkIngress(t, objs, envs)
			}
			if got := len(objs.networkPolicies) > 0; got != tc.networkPolicy {
				t.Errorf("has NetworkPolicy: %v, want %v", got, tc.networkPolicy)
			}
			if tc.networkPolicy {
				checkNetworkPolicy(t, objs, envs)
			}
			if tc.appServices {
				checkAppServices(t, objs, envs)
			}
		})
	}
}

// checkDeployment checks one Deployment with an authproxy container and
// returns that container's environment.
func checkDeployment(t *testing.T, p proxy, objs objects, d *appsv1.Deployment, sidecar bool) proxyEnv {
	t.Helper()
	spec := &d.Spec.Template.Spec
	c := findContainer(spec, proxyContainer)
	if c == nil {
		t.Fatalf("Deployment %s has no %s container", d.Name, proxyContainer)
	}
	env := containerEnv(t, p, objs, c)
	listen := port(t, env.get("AUTHPROXY_ADDR"))

	t.Run("config", func(t *testing.T) {
		// What parse in cmd/authproxy/config.go requires.
		for _, names := range [][]string{
			{"AUTHPROXY_UPSTREAM", "AUTHPROXY_ROUTES_FILE"},
			{"AUTHPROXY_ISSUER", "AUTH0_DOMAIN"},
			{"AUTHPROXY_CLIENT_ID", "AUTH0_CLIENT_ID"},
			{"AUTHPROXY_CLIENT_SECRET", "AUTH0_CLIENT_SECRET"},
			// Not required by the proxy, but sessions made by one
			// replica must open on the others and survive restarts.
			{"AUTHPROXY_COOKIE_SECRET"},
		} {
			if !slices.ContainsFunc(names, func(n string) bool { return env.get(n) != "" }) {
				t.Errorf("none of %v is set", names)
			}
		}
		if env.get("AUTHPROXY_UPSTREAM") != "" && env.get("AUTHPROXY_ROUTES_FILE") != "" {
			t.Error("both AUTHPROXY_UPSTREAM and AUTHPROXY_ROUTES_FILE are set: a configuration error")
		}
		env.upstreams = upstreams(t, objs, spec, c, env)
		for _, u := range env.upstreams {
			ip, err := netip.ParseAddr(u.Hostname())
			loopback := err == nil && ip.IsLoopback()
			if sidecar && !loopback {
				t.Errorf("sidecar: upstream %s is not on loopback, so the app is reachable around authproxy", u)
			}
			if !sidecar && loopback {
				t.Errorf("standalone: upstream %s is on loopback, where nothing runs", u)
			}
		}
		if hasApp := len(spec.Containers) > 1; hasApp != sidecar {
			t.Errorf("%d containers; sidecar is %v", len(spec.Containers), sidecar)
		}
	})

	t.Run("ports and probes", func(t *testing.T) {
		if !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool {
			return int(cp.ContainerPort) == listen && cp.Name == "http"
		}) {
			t.Errorf("no container port http = %d (AUTHPROXY_ADDR %q)", listen, env.get("AUTHPROXY_ADDR"))
		}
		for _, pr := range []struct {
			name  string
			probe *corev1.Probe
			path  string
		}{
			{"livenessProbe", c.LivenessProbe, "/healthz"},
			{"readinessProbe", c.ReadinessProbe, "/readyz"},
		} {
			if pr.probe == nil || pr.probe.HTTPGet == nil {
				t.Errorf("%s: want an httpGet probe on %s", pr.name, pr.path)
				continue
			}
			g := pr.probe.HTTPGet
			if g.Path != pr.path {
				t.Errorf("%s path %q, want %q", pr.name, g.Path, pr.path)
			}
			if n, ok := resolvePort(c, g.Port); !ok || n != listen {
				t.Errorf("%s port %s, want the proxy's %d", pr.name, g.Port.String(), listen)
			}
			if g.Scheme != "" && g.Scheme != corev1.URISchemeHTTP {
				t.Errorf("%s scheme %s: authproxy serves plain HTTP", pr.name, g.Scheme)
			}
		}
	})

	t.Run("services", func(t *testing.T) {
		// Named ports a Service may target: the public listener, and the
		// internal one (metrics, admin API) when it is on.
		targets := map[string]int{"http": listen}
		if addr := env.get("AUTHPROXY_METRICS_ADDR"); addr != "" {
			targets["metrics"] = port(t, addr)
		}
		public := 0
		for _, s := range objs.services {
			if !selects(s.Spec.Selector, d.Spec.Template.Labels) {
				continue
			}
			if len(s.Spec.Ports) == 0 {
				t.Errorf("Service %s has no port", s.Name)
			}
			for _, sp := range s.Spec.Ports {
				want, ok := targets[sp.Name]
				if !ok {
					t.Errorf("Service %s port %q: want a port named http (or metrics, for the internal listener)", s.Name, sp.Name)
					continue
				}
				if sp.Name == "http" {
					public++
				}
				target := sp.TargetPort
				if target.Type == intstr.Int && target.IntVal == 0 {
					target = intstr.FromInt32(sp.Port)
				}
				if n, ok := resolvePort(c, target); !ok || n != want {
					t.Errorf("Service %s port %s targets %s, not the proxy's %s port %d", s.Name, sp.Name, target.String(), sp.Name, want)
				}
				// A named target must not be ambiguous with the app's ports.
				for _, other := range spec.Containers {
					if other.Name == c.Name {
						continue
					}
					for _, cp := range other.Ports {
						if cp.Name == target.StrVal || int(cp.ContainerPort) == want {
							t.Errorf("container %s also declares port %s/%d", other.Name, cp.Name, cp.ContainerPort)
						}
					}
				}
			}
		}
		if public == 0 {
			t.Errorf("no Service reaches Deployment %s's http port", d.Name)
		}
	})

	t.Run("securityContext", func(t *testing.T) {
		pod := spec.SecurityContext
		if pod == nil {
			pod = &corev1.PodSecurityContext{}
		}
		for _, ctr := range slices.Concat(spec.InitContainers, spec.Containers) {
			sc := ctr.SecurityContext
			if sc == nil {
				sc = &corev1.SecurityContext{}
			}
			// Container settings win over the pod's.
			nonRoot := firstBool(sc.RunAsNonRoot, pod.RunAsNonRoot)
			user := firstInt(sc.RunAsUser, pod.RunAsUser)
			seccomp := sc.SeccompProfile
			if seccomp == nil {
				seccomp = pod.SeccompProfile
			}
			for _, check := range []struct {
				what string
				ok   bool
			}{
				{"runAsNonRoot: true", nonRoot != nil && *nonRoot},
				{"runAsUser: 65532", user != nil && *user == nonRootUID},
				{"readOnlyRootFilesystem: true", sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem},
				{"allowPrivilegeEscalation: false", sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation},
				{"privileged unset or false", sc.Privileged == nil || !*sc.Privileged},
				{"capabilities drop ALL, add none", sc.Capabilities != nil && slices.Contains(sc.Capabilities.Drop, "ALL") && len(sc.Capabilities.Add) == 0},
				{"seccompProfile RuntimeDefault or Localhost", seccomp != nil && (seccomp.Type == corev1.SeccompProfileTypeRuntimeDefault || seccomp.Type == corev1.SeccompProfileTypeLocalhost)},
			} {
				if !check.ok {
					t.Errorf("container %s: want %s", ctr.Name, check.what)
				}
			}
		}
		if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			t.Error("automountServiceAccountToken: want false: authproxy never calls the Kubernetes API")
		}
		if spec.HostNetwork || spec.HostPID || spec.HostIPC {
			t.Error("pod shares a host namespace")
		}
	})

	t.Run("termination", func(t *testing.T) {
		drain, err := time.ParseDuration(env.get("AUTHPROXY_DRAIN_DELAY"))
		if err != nil {
			t.Fatal(err)
		}
		shutdown, err := time.ParseDuration(env.get("AUTHPROXY_SHUTDOWN_TIMEOUT"))
		if err != nil {
			t.Fatal(err)
		}
		need := int64(math.Ceil((drain + shutdown).Seconds()))
		if g := spec.TerminationGracePeriodSeconds; g == nil || *g < need {
			t.Errorf("terminationGracePeriodSeconds %v < AUTHPROXY_DRAIN_DELAY %s + AUTHPROXY_SHUTDOWN_TIMEOUT %s: the kubelet would kill in-flight requests", deref(g), drain, shutdown)
		}
	})

	t.Run("resources", func(t *testing.T) {
		for _, ctr := range spec.Containers {
			r := ctr.Resources
			for _, want := range []struct {
				what string
				list corev1.ResourceList
				name corev1.ResourceName
			}{
				{"requests.cpu", r.Requests, corev1.ResourceCPU},
				{"requests.memory", r.Requests, corev1.ResourceMemory},
				{"limits.cpu", r.Limits, corev1.ResourceCPU},
				{"limits.memory", r.Limits, corev1.ResourceMemory},
			} {
				if q, ok := want.list[want.name]; !ok || q.IsZero() {
					t.Errorf("container %s: no %s", ctr.Name, want.what)
				}
			}
		}
	})
	return env
}

func checkIngress(t *testing.T, objs objects, envs map[string]proxyEnv) {
	t.Helper()
	services := map[string]*corev1.Service{}
	for _, s := range objs.services {
		services[s.Name] = s
	}
	var tlsHosts []string
	for _, ing := range objs.ingresses {
		if len(ing.Spec.TLS) == 0 {
			t.Errorf("Ingress %s has no tls: the proxy's cookies and callback need https", ing.Name)
		}
		for _, tls := range ing.Spec.TLS {
			tlsHosts = append(tlsHosts, tls.Hosts...)
		}
		for _, rule := range ing.Spec.Rules {
			if rule.HTTP == nil {
				continue
			}
			for _, path := range rule.HTTP.Paths {
				b := path.Backend.Service
				if b == nil {
					t.Errorf("Ingress %s: path %s has no Service backend", ing.Name, path.Path)
					continue
				}
				s, ok := services[b.Name]
				if !ok {
					t.Errorf("Ingress %s: backend Service %s is not in the manifests", ing.Name, b.Name)
					continue
				}
				if !slices.ContainsFunc(s.Spec.Ports, func(sp corev1.ServicePort) bool {
					return (b.Port.Name != "" && sp.Name == b.Port.Name) || (b.Port.Number != 0 && sp.Port == b.Port.Number)
				}) {
					t.Errorf("Ingress %s: Service %s has no port %+v", ing.Name, s.Name, b.Port)
				}
			}
		}
	}

	for _, env := range envs {
		// TLS ends at the ingress: authproxy cannot derive the public
		// https callback from the plain-HTTP request it gets.
		redirect := env.get("AUTHPROXY_REDIRECT_URL")
		u, err := url.Parse(redirect)
		if err != nil || u.Scheme != "https" || u.Path != "/auth/callback" || !slices.Contains(tlsHosts, u.Hostname()) {
			t.Errorf("AUTHPROXY_REDIRECT_URL %q: want https://<one of the Ingress tls hosts %v>/auth/callback", redirect, tlsHosts)
		}
		trusted := env.get("AUTHPROXY_TRUSTED_PROXIES")
		if strings.TrimSpace(trusted) == "" {
			t.Error("AUTHPROXY_TRUSTED_PROXIES is empty: the ingress's X-Forwarded-* headers would be ignored")
		}
		for s := range strings.SplitSeq(trusted, ",") {
			s = strings.TrimSpace(s)
			if _, err := netip.ParsePrefix(s); err != nil {
				if _, err := netip.ParseAddr(s); err != nil {
					t.Errorf("AUTHPROXY_TRUSTED_PROXIES entry %q is not a CIDR or an address", s)
				}
			}
		}
		if env.get("AUTHPROXY_COOKIE_SECURE") == "false" {
			t.Error("AUTHPROXY_COOKIE_SECURE=false behind a TLS ingress")
		}
	}
}

func checkNetworkPolicy(t *testing.T, objs objects, envs map[string]proxyEnv) {
	t.Helper()
	for _, np := range objs.networkPolicies {
		if len(np.Spec.PodSelector.MatchLabels) == 0 && len(np.Spec.PodSelector.MatchExpressions) == 0 {
			t.Errorf("NetworkPolicy %s selects every pod in the namespace", np.Name)
		}
	}
	for _, d := range objs.deployments {
		for _, u := range envs[d.Name].upstreams {
			upstreamPort := portOf(u)
			ok := false
			for _, np := range objs.networkPolicies {
				for _, rule := range np.Spec.Ingress {
					fromProxy := slices.ContainsFunc(rule.From, func(peer networkingv1.NetworkPolicyPeer) bool {
						return peer.PodSelector != nil && selects(peer.PodSelector.MatchLabels, d.Spec.Template.Labels)
					})
					toUpstream := slices.ContainsFunc(rule.Ports, func(np networkingv1.NetworkPolicyPort) bool {
						return np.Port != nil && np.Port.String() == upstreamPort
					})
					if fromProxy && toUpstream && len(rule.From) == 1 {
						ok = true
					}
				}
			}
			if !ok {
				t.Errorf("no NetworkPolicy admits only Deployment %s's pods to the upstream %s's port %s", d.Name, u, upstreamPort)
			}
		}
	}
}

// portOf is u's port, or its scheme's default.
func portOf(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	return map[string]string{"http": "80", "https": "443"}[u.Scheme]
}

// checkAppServices checks that every upstream names a Service of the
// manifests (by its name, or name.namespace.svc...) with the URL's port,
// and that the Service is an app's, not authproxy's own.
func checkAppServices(t *testing.T, objs objects, envs map[string]proxyEnv) {
	t.Helper()
	for _, d := range objs.deployments {
		for _, u := range envs[d.Name].upstreams {
			name, _, _ := strings.Cut(u.Hostname(), ".")
			i := slices.IndexFunc(objs.services, func(s *corev1.Service) bool { return s.Name == name })
			if i < 0 {
				t.Errorf("upstream %s: no Service %s in the manifests", u, name)
				continue
			}
			s := objs.services[i]
			if !slices.ContainsFunc(s.Spec.Ports, func(sp corev1.ServicePort) bool { return strconv.Itoa(int(sp.Port)) == portOf(u) }) {
				t.Errorf("upstream %s: Service %s has no port %s", u, name, portOf(u))
			}
			if selects(s.Spec.Selector, d.Spec.Template.Labels) {
				t.Errorf("upstream %s: Service %s selects authproxy's own pods", u, name)
			}
		}
	}
}

// upstreams are the URLs authproxy forwards to: AUTHPROXY_UPSTREAM, or the
// upstream of every line of the routes file, read from the ConfigMap that
// is mounted where AUTHPROXY_ROUTES_FILE points.
func upstreams(t *testing.T, objs objects, spec *corev1.PodSpec, c *corev1.Container, env proxyEnv) []*url.URL {
	t.Helper()
	var raw []string
	if u := env.get("AUTHPROXY_UPSTREAM"); u != "" {
		raw = append(raw, u)
	}
	if file := env.get("AUTHPROXY_ROUTES_FILE"); file != "" {
		routes, err := parseRoutes(mountedFile(t, objs, spec, c, file))
		if err != nil {
			t.Fatalf("routes file %s: %v", file, err)
		}
		if len(routes) == 0 {
			t.Fatalf("routes file %s has no route", file)
		}
		for _, r := range routes {
			raw = append(raw, r.upstream)
		}
	}
	var urls []*url.URL
	for _, s := range raw {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			t.Fatalf("upstream %q is not an http(s) URL with a host", s)
		}
		urls = append(urls, u)
	}
	return urls
}

// route is one line of a routes file: host path upstream [options].
type route struct {
	line                 int
	host, path, upstream string
	options              []string
}

// parseRoutes reads a routes file as issue 13 specifies it: # comments,
// one route per line. It checks the shape only; the proxy's own parser
// (the routes branch) is the judge of the rest.
func parseRoutes(content string) ([]route, error) {
	var routes []route
	var problems []string
	for i, line := range strings.Split(content, "\n") {
		if j := strings.Index(line, "#"); j >= 0 {
			line = line[:j]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 3 {
			problems = append(problems, fmt.Sprintf("line %d: want host path upstream [options], got %q", i+1, line))
			continue
		}
		if !strings.HasPrefix(f[1], "/") {
			problems = append(problems, fmt.Sprintf("line %d: path %q does not start with /", i+1, f[1]))
		}
		routes = append(routes, route{line: i + 1, host: f[0], path: f[1], upstream: f[2], options: f[3:]})
	}
	if problems != nil {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return routes, nil
}

// mountedFile is the content of the file at path in container c, which
// must come from a ConfigMap volume of the manifests, mounted as a
// directory: the kubelet never updates a subPath mount, so a file there
// would not be reloaded after a change.
func mountedFile(t *testing.T, objs objects, spec *corev1.PodSpec, c *corev1.Container, path string) string {
	t.Helper()
	for _, m := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok && path != m.MountPath {
			continue
		}
		if m.SubPath != "" || m.SubPathExpr != "" {
			t.Fatalf("%s is mounted with subPath: the kubelet never updates it, so authproxy would not see a change", path)
		}
		i := slices.IndexFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name })
		if i < 0 || spec.Volumes[i].ConfigMap == nil {
			t.Fatalf("%s: volume %s is not a ConfigMap volume", path, m.Name)
		}
		src := spec.Volumes[i].ConfigMap
		key := rel
		for _, item := range src.Items {
			if item.Path == rel {
				key = item.Key
			}
		}
		cm, ok := objs.configMaps[src.Name]
		if !ok {
			t.Fatalf("%s: ConfigMap %s is not in the manifests", path, src.Name)
		}
		data, ok := cm.Data[key]
		if !ok {
			t.Fatalf("%s: ConfigMap %s has no key %s", path, src.Name, key)
		}
		return data
	}
	t.Fatalf("%s is on no volume mount of container %s", path, c.Name)
	return ""
}

// TestPlaceholderSecrets keeps real secrets out of the repository: every
// value of a Secret here must say it is to be replaced.
func TestPlaceholderSecrets(t *testing.T) {
	dec := newDecoder(t)
	for _, file := range yamlFiles(t) {
		if isKustomization(file) {
			continue
		}
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		docs, err := documents(data)
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range docs {
			obj, _, err := decodeDoc(dec, doc)
			s, ok := obj.(*corev1.Secret)
			if err != nil || !ok {
				continue // TestManifestsDecodeStrictly reports errors
			}
			values := map[string]string{}
			for k, v := range s.Data {
				values[k] = string(v)
			}
			for k, v := range s.StringData {
				values[k] = v
			}
			for k, v := range values {
				if !strings.Contains(v, "REPLACE") {
					t.Errorf("%s: Secret %s key %s is not a REPLACE placeholder", file, s.Name, k)
				}
			}
		}
	}
}

// TestNamesInText checks every AUTHPROXY_ or AUTH0_ name written anywhere
// under deploy/ (manifests, comments, kustomize literals, README) against
// the proxy's configuration, so that docs cannot drift from the code.
func TestNamesInText(t *testing.T) {
	p := readProxy(t)
	name := regexp.MustCompile(`\b(?:AUTHPROXY|AUTH0)_[A-Z0-9_]*[A-Z0-9]\b`)
	seen := 0
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != "." && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(path) {
		case ".go", ".mod", ".sum":
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var unknown []string
		for _, n := range name.FindAllString(string(data), -1) {
			seen++
			if !p.knows(t, n) && !slices.Contains(unknown, n) {
				unknown = append(unknown, n)
			}
		}
		sort.Strings(unknown)
		for _, n := range unknown {
			t.Errorf("%s names %s, which is not an envconfig tag in cmd/authproxy", path, n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen == 0 {
		t.Error("no AUTHPROXY_ names found: the scan is broken")
	}
}

func firstBool(a, b *bool) *bool {
	if a != nil {
		return a
	}
	return b
}

func firstInt(a, b *int64) *int64 {
	if a != nil {
		return a
	}
	return b
}

func deref(p *int64) any {
	if p == nil {
		return "unset"
	}
	return *p
}
