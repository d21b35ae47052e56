package deploy

import (
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/lint/support"
)

// helmDir holds the Helm chart; chartDir is the chart itself.
const (
	helmDir  = "helm"
	chartDir = helmDir + "/authproxy"
)

// helmCase is a set of values the chart must render, and what the output
// must show.
type helmCase struct {
	name   string
	values map[string]any
	// existing stands for a Secret the user made (secret.existingSecret):
	// the chart does not render it, the pod reads from it.
	existing *corev1.Secret
	// routes: the routes file is mounted, not AUTHPROXY_UPSTREAM set.
	routes, hpa, metrics, serviceMonitor, pdb bool
}

// twoApps is a routes file for two apps behind one proxy.
const twoApps = `# host              path     upstream                  options
wiki.example.com    /        http://wiki:8080
ci.example.com      /        http://ci.tools.svc:8111
ci.example.com      /api/    http://ci-api.tools.svc:9000   strip-prefix
`

func helmCases() []helmCase {
	return []helmCase{
		{name: "defaults", values: map[string]any{}, pdb: true},
		{
			name: "routes, rules, metrics, Redis",
			values: map[string]any{
				"upstream":       "",
				"routes":         twoApps,
				"rules":          "/admin/ group:admins\n",
				"reloadInterval": "10s",
				"config": map[string]any{
					"AUTH0_DOMAIN":            "acme.eu.auth0.com",
					"AUTHPROXY_CLIENT_ID":     "abc123",
					"AUTHPROXY_REDIRECT_URL":  "https://auth.example.com/auth/callback",
					"AUTHPROXY_COOKIE_DOMAIN": ".example.com",
				},
				"secret":  map[string]any{"clientSecret": "REPLACE-client", "cookieSecret": "REPLACE-cookie"},
				"redis":   map[string]any{"enabled": true, "url": "redis://redis:6379/0"},
				"metrics": map[string]any{"enabled": true, "serviceMonitor": map[string]any{"enabled": true, "labels": map[string]any{"release": "prometheus"}}},
			},
			routes: true, metrics: true, serviceMonitor: true, pdb: true,
		},
		{
			name: "existing Secret, autoscaling, no PodDisruptionBudget",
			values: map[string]any{
				"fullnameOverride":    "gate",
				"secret":              map[string]any{"existingSecret": "authproxy-prod", "clientSecretKey": "client-secret", "cookieSecretKey": "cookie-secret"},
				"redis":               map[string]any{"enabled": true, "urlKey": "redis-url"},
				"autoscaling":         map[string]any{"enabled": true, "minReplicas": 3, "maxReplicas": 10},
				"podDisruptionBudget": map[string]any{"enabled": false},
				"image":               map[string]any{"digest": "sha256:" + strings.Repeat("ab", 32)},
				"port":                8443,
			},
			existing: &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: "authproxy-prod"},
				StringData: map[string]string{"client-secret": "REPLACE", "cookie-secret": "REPLACE", "redis-url": "REPLACE"},
			},
			hpa: true,
		},
	}
}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load %s: %v", chartDir, err)
	}
	return ch
}

// renderChart renders the chart as `helm template` does (an install dry
// run with no cluster), which also validates values.schema.json.
func renderChart(t *testing.T, ch *chart.Chart, values map[string]any) (string, error) {
	t.Helper()
	install := action.NewInstall(&action.Configuration{Log: t.Logf})
	install.DryRun = true
	install.ClientOnly = true
	install.ReleaseName = "authproxy"
	install.Namespace = "web"
	install.Replace = true
	rel, err := install.Run(ch, values)
	if err != nil {
		return "", err
	}
	return rel.Manifest, nil
}

func TestHelmLint(t *testing.T) {
	for _, tc := range helmCases() {
		t.Run(tc.name, func(t *testing.T) {
			lint := action.NewLint()
			lint.Strict = true
			lint.Namespace = "web"
			res := lint.Run([]string{chartDir}, tc.values)
			for _, err := range res.Errors {
				t.Errorf("lint: %v", err)
			}
			for _, m := range res.Messages {
				if m.Severity >= support.WarningSev {
					t.Errorf("lint: %s", m)
				} else {
					t.Logf("lint: %s", m)
				}
			}
			if res.TotalChartsLinted != 1 {
				t.Errorf("linted %d charts, want 1", res.TotalChartsLinted)
			}
		})
	}
}

func TestHelmRendered(t *testing.T) {
	p := readProxy(t)
	dec := newDecoder(t)
	ch := loadChart(t)
	for _, tc := range helmCases() {
		t.Run(tc.name, func(t *testing.T) {
			out, err := renderChart(t, ch, tc.values)
			if err != nil {
				t.Fatalf("render: %v", err)
			}
			docs, err := documents([]byte(out))
			if err != nil {
				t.Fatal(err)
			}
			objs := collect(t, dec, docs)
			if tc.existing != nil {
				if _, ok := objs.secrets[tc.existing.Name]; ok {
					t.Fatalf("the chart renders Secret %s although it exists", tc.existing.Name)
				}
				objs.secrets[tc.existing.Name] = tc.existing
			}
			if len(objs.deployments) != 1 {
				t.Fatalf("%d Deployments, want 1", len(objs.deployments))
			}
			d := objs.deployments[0]
			env := checkDeployment(t, p, objs, d, false)
			checkChartDeployment(t, tc, objs, d, env)
			checkChartScaling(t, tc, objs, d)
			checkChartMetrics(t, tc, objs, d, env)
		})
	}
}

// checkChartDeployment checks what the chart adds to checkDeployment's
// checks: the routes file, the rolling of pods, the Redis URL.
func checkChartDeployment(t *testing.T, tc helmCase, objs objects, d *appsv1.Deployment, env proxyEnv) {
	t.Helper()
	spec := &d.Spec.Template.Spec
	if got := env.get("AUTHPROXY_ROUTES_FILE") != ""; got != tc.routes {
		t.Errorf("AUTHPROXY_ROUTES_FILE set: %v, want %v", got, tc.routes)
	}
	if tc.routes {
		if n := len(env.upstreams); n != 3 {
			t.Errorf("%d routes mounted, want the 3 of the values", n)
		}
		if env.get("AUTHPROXY_UPSTREAM") != "" {
			t.Error("AUTHPROXY_UPSTREAM set beside the routes file")
		}
		rules := mountedFile(t, objs, spec, findContainer(spec, proxyContainer), env.get("AUTHPROXY_RULES_FILE"))
		if !strings.Contains(rules, "/admin/ group:admins") {
			t.Errorf("rules file is %q", rules)
		}
	}
	ann := d.Spec.Template.Annotations
	if ann["checksum/config"] == "" {
		t.Error("no checksum/config annotation: a settings change would not roll the pods")
	}
	if got := ann["checksum/secret"] != ""; got != (tc.existing == nil) {
		t.Errorf("checksum/secret annotation: %v, want it exactly when the chart makes the Secret", got)
	}
	for k := range ann {
		if strings.Contains(k, "files") || strings.Contains(k, "routes") {
			t.Errorf("annotation %s rolls the pods on a routes change, which authproxy reloads in place", k)
		}
	}
	redis := env.get("AUTHPROXY_SESSION_STORE") == "redis"
	if redis && env.get("AUTHPROXY_REDIS_URL") == "" {
		t.Error("AUTHPROXY_SESSION_STORE=redis without AUTHPROXY_REDIS_URL")
	}
	// Secrets reach the pod from the Secret only, never from the ConfigMap.
	for _, cm := range objs.configMaps {
		for k := range cm.Data {
			if slices.Contains([]string{"AUTHPROXY_CLIENT_SECRET", "AUTHPROXY_COOKIE_SECRET", "AUTHPROXY_REDIS_URL"}, k) {
				t.Errorf("ConfigMap %s holds the secret %s", cm.Name, k)
			}
		}
	}
}

func checkChartScaling(t *testing.T, tc helmCase, objs objects, d *appsv1.Deployment) {
	t.Helper()
	labels := d.Spec.Template.Labels
	if got := len(objs.hpas) == 1; got != tc.hpa {
		t.Errorf("%d HorizontalPodAutoscalers, want one: %v", len(objs.hpas), tc.hpa)
	}
	if tc.hpa {
		h := objs.hpas[0]
		if ref := h.Spec.ScaleTargetRef; ref.Kind != "Deployment" || ref.Name != d.Name || ref.APIVersion != "apps/v1" {
			t.Errorf("HPA scales %+v, not Deployment %s", ref, d.Name)
		}
		if d.Spec.Replicas != nil {
			t.Error("Deployment sets replicas beside an HPA: every upgrade would reset the HPA's count")
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 || h.Spec.MaxReplicas < *h.Spec.MinReplicas {
			t.Errorf("HPA replicas %v..%d: want at least 2, max >= min", h.Spec.MinReplicas, h.Spec.MaxReplicas)
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			if _, ok := c.Resources.Requests[corev1.ResourceCPU]; !ok {
				t.Errorf("container %s has no CPU request, which CPU utilization is measured against", c.Name)
			}
		}
	} else if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Errorf("replicas %v: want at least 2 without an HPA", d.Spec.Replicas)
	}
	if got := len(objs.pdbs) == 1; got != tc.pdb {
		t.Errorf("%d PodDisruptionBudgets, want one: %v", len(objs.pdbs), tc.pdb)
	}
	for _, pdb := range objs.pdbs {
		if pdb.Spec.Selector == nil || !selects(pdb.Spec.Selector.MatchLabels, labels) {
			t.Errorf("PodDisruptionBudget %s does not select authproxy's pods", pdb.Name)
		}
		// A budget that allows no disruption blocks every node drain.
		switch {
		case pdb.Spec.MaxUnavailable != nil:
			if pdb.Spec.MaxUnavailable.Type == intstr.Int && pdb.Spec.MaxUnavailable.IntVal < 1 {
				t.Errorf("PodDisruptionBudget maxUnavailable %s blocks node drains", pdb.Spec.MaxUnavailable.String())
			}
		case pdb.Spec.MinAvailable != nil:
			if r := d.Spec.Replicas; r != nil && pdb.Spec.MinAvailable.Type == intstr.Int && pdb.Spec.MinAvailable.IntVal >= *r {
				t.Errorf("PodDisruptionBudget minAvailable %d of %d replicas blocks node drains", pdb.Spec.MinAvailable.IntVal, *r)
			}
		default:
			t.Errorf("PodDisruptionBudget %s sets neither minAvailable nor maxUnavailable", pdb.Name)
		}
	}
}

func checkChartMetrics(t *testing.T, tc helmCase, objs objects, d *appsv1.Deployment, env proxyEnv) {
	t.Helper()
	if got := env.get("AUTHPROXY_METRICS_ADDR") != ""; got != tc.metrics {
		t.Errorf("AUTHPROXY_METRICS_ADDR set: %v, want %v", got, tc.metrics)
	}
	if got := len(objs.serviceMonitors) == 1; got != tc.serviceMonitor {
		t.Fatalf("%d ServiceMonitors, want one: %v", len(objs.serviceMonitors), tc.serviceMonitor)
	}
	for _, sm := range objs.serviceMonitors {
		if len(sm.Spec.Endpoints) != 1 {
			t.Fatalf("ServiceMonitor %s: %d endpoints, want 1", sm.Name, len(sm.Spec.Endpoints))
		}
		ep := sm.Spec.Endpoints[0]
		if ep.Path != "/metrics" || ep.Port != "metrics" {
			t.Errorf("ServiceMonitor endpoint %s on port %q, want /metrics on port metrics", ep.Path, ep.Port)
		}
		if !slices.Equal(sm.Spec.NamespaceSelector.MatchNames, []string{"web"}) {
			t.Errorf("ServiceMonitor namespaces %v, want the release's [web]", sm.Spec.NamespaceSelector.MatchNames)
		}
		var scraped []string
		for _, s := range objs.services {
			if !selects(sm.Spec.Selector.MatchLabels, s.Labels) {
				continue
			}
			scraped = append(scraped, s.Name)
			// The public Service must not carry the internal port.
			if !slices.ContainsFunc(s.Spec.Ports, func(sp corev1.ServicePort) bool { return sp.Name == "metrics" }) ||
				slices.ContainsFunc(s.Spec.Ports, func(sp corev1.ServicePort) bool { return sp.Name == "http" }) {
				t.Errorf("ServiceMonitor selects Service %s with ports %+v, want the metrics port only", s.Name, s.Spec.Ports)
			}
			if !selects(s.Spec.Selector, d.Spec.Template.Labels) {
				t.Errorf("Service %s does not select authproxy's pods", s.Name)
			}
		}
		if len(scraped) != 1 {
			t.Errorf("ServiceMonitor selects Services %v, want exactly the metrics one", scraped)
		}
		if sm.Labels["release"] != "prometheus" {
			t.Errorf("ServiceMonitor labels %v lack the values' release=prometheus", sm.Labels)
		}
	}
}

// TestHelmRefuses renders value sets that cannot work: the chart must fail
// with every problem listed at once, not render a Deployment that crashes.
func TestHelmRefuses(t *testing.T) {
	ch := loadChart(t)
	tests := []struct {
		name   string
		values map[string]any
		want   []string
	}{
		{"both upstream and routes", map[string]any{"routes": twoApps}, []string{"one of upstream and routes"}},
		{"neither", map[string]any{"upstream": ""}, []string{"set upstream or routes"}},
		{"every problem at once", map[string]any{
			"upstream": "",
			"config":   map[string]any{"AUTHPROXY_COOKIE_SECRET": "x", "AUTHPROXY_UPSTREAM": "http://a:1"},
			"redis":    map[string]any{"enabled": true},
			"metrics":  map[string]any{"port": 9001, "enabled": true, "serviceMonitor": map[string]any{"enabled": true}},
		}, []string{
			"set upstream or routes",
			"config.AUTHPROXY_COOKIE_SECRET is a secret",
			"config.AUTHPROXY_UPSTREAM: the chart sets it",
			"redis.enabled needs redis.url",
			"metrics.port must differ from port",
		}},
		{"ServiceMonitor without metrics", map[string]any{"metrics": map[string]any{"serviceMonitor": map[string]any{"enabled": true}}}, []string{"needs metrics.enabled"}},
		// values.schema.json
		{"unknown value", map[string]any{"upstreams": "http://a:1"}, []string{"upstreams"}},
		{"setting that is no authproxy name", map[string]any{"config": map[string]any{"UPSTREAM": "x"}}, []string{"UPSTREAM"}},
		{"bad duration", map[string]any{"drainDelay": "5"}, []string{"drainDelay"}},
		{"upstream without scheme", map[string]any{"upstream": "legacy-app:8080"}, []string{"upstream"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := renderChart(t, ch, tc.values)
			if err == nil {
				t.Fatal("rendered; want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestHelmChartFiles keeps the chart's directory to what Helm packages and
// checks here: a stray YAML file would be neither rendered nor checked.
func TestHelmChartFiles(t *testing.T) {
	ch := loadChart(t)
	var templates []string
	for _, f := range ch.Templates {
		templates = append(templates, filepath.Base(f.Name))
	}
	slices.Sort(templates)
	want := []string{"NOTES.txt", "_helpers.tpl", "configmap.yaml", "deployment.yaml", "files-configmap.yaml", "hpa.yaml", "pdb.yaml", "secret.yaml", "service.yaml", "servicemonitor.yaml"}
	if !slices.Equal(templates, want) {
		t.Errorf("templates %v, want %v: add a case to TestHelmRendered for a new one", templates, want)
	}
	if ch.Schema == nil {
		t.Error("no values.schema.json")
	}
	if keys := slices.Sorted(maps.Keys(ch.Values)); len(keys) == 0 {
		t.Error("no values.yaml")
	}
}
