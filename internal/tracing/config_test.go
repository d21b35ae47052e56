package tracing

import (
	"strings"
	"testing"
)

func lookupMap(m map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) { v, ok := m[name]; return v, ok }
}

// TestFromEnv: tracing is off unless an endpoint or OTEL_TRACES_EXPORTER=otlp
// asks for it; the endpoint, protocol, service name, attributes and sampler
// are read as the OpenTelemetry specification describes them.
func TestFromEnv(t *testing.T) {
	for _, tt := range []struct {
		name     string
		env      map[string]string
		enabled  bool
		endpoint string
		protocol string
		service  string
		sampler  string // the sampler's Description, when not the default
	}{
		{name: "nothing set", env: nil, enabled: false, endpoint: "http://localhost:4318/v1/traces"},
		{name: "other OTEL variables only", env: map[string]string{"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"},
			enabled: false, endpoint: "http://localhost:4318/v1/traces", service: "x", sampler: "AlwaysOnSampler"},
		{name: "generic endpoint gets the traces path", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"},
			enabled: true, endpoint: "http://jaeger:4318/v1/traces"},
		{name: "generic endpoint with a base path", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://otlp.example/base/"},
			enabled: true, endpoint: "https://otlp.example/base/v1/traces"},
		{name: "traces endpoint as it is, and it wins", env: map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b:9999/custom"},
			enabled: true, endpoint: "http://b:9999/custom"},
		{name: "grpc keeps the endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
			enabled: true, endpoint: "http://collector:4317", protocol: ProtocolGRPC},
		{name: "traces protocol wins", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317",
			"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"},
			enabled: true, endpoint: "http://c:4317", protocol: ProtocolGRPC},
		{name: "exporter otlp without endpoint", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"},
			enabled: true, endpoint: "http://localhost:4318/v1/traces"},
		{name: "exporter otlp grpc without endpoint", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
			enabled: true, endpoint: "http://localhost:4317", protocol: ProtocolGRPC},
		{name: "exporter none wins over an endpoint", env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://j:4318"},
			enabled: false, endpoint: "http://j:4318/v1/traces"},
		{name: "SDK disabled wins", env: map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://j:4318"},
			enabled: false, endpoint: "http://j:4318/v1/traces"},
		{name: "service name from resource attributes", env: map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attrs,team=id%20p"},
			service: "from-attrs", endpoint: "http://localhost:4318/v1/traces"},
		{name: "OTEL_SERVICE_NAME wins over attributes", env: map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "service.name=a", "OTEL_SERVICE_NAME": "b"},
			service: "b", endpoint: "http://localhost:4318/v1/traces"},
		{name: "ratio sampler", env: map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"},
			endpoint: "http://localhost:4318/v1/traces", sampler: "ParentBased{root:TraceIDRatioBased{0.25}"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, problems := FromEnv(lookupMap(tt.env))
			if len(problems) > 0 {
				t.Fatalf("problems: %q", problems)
			}
			if c.Enabled != tt.enabled {
				t.Errorf("Enabled = %v, want %v", c.Enabled, tt.enabled)
			}
			if c.Endpoint == nil || c.Endpoint.String() != tt.endpoint {
				t.Errorf("Endpoint = %v, want %s", c.Endpoint, tt.endpoint)
			}
			if want := cmp(tt.protocol, ProtocolHTTP); c.Protocol != want {
				t.Errorf("Protocol = %q, want %q", c.Protocol, want)
			}
			if want := cmp(tt.service, "authproxy"); c.ServiceName != want {
				t.Errorf("ServiceName = %q, want %q", c.ServiceName, want)
			}
			if want := cmp(tt.sampler, "ParentBased{root:AlwaysOnSampler"); !strings.HasPrefix(c.Sampler.Description(), want) {
				t.Errorf("Sampler = %s, want %s...", c.Sampler.Description(), want)
			}
		})
	}
}

func cmp(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// TestFromEnvAttributes: OTEL_RESOURCE_ATTRIBUTES values are
// percent-decoded, in order.
func TestFromEnvAttributes(t *testing.T) {
	c, problems := FromEnv(lookupMap(map[string]string{"OTEL_RESOURCE_ATTRIBUTES": " deployment.environment=prod , team=id%20platform,,x=a%3Db"}))
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	want := [][2]string{{"deployment.environment", "prod"}, {"team", "id platform"}, {"x", "a=b"}}
	if len(c.Attributes) != len(want) {
		t.Fatalf("Attributes = %q, want %q", c.Attributes, want)
	}
	for i := range want {
		if c.Attributes[i] != want[i] {
			t.Errorf("Attributes[%d] = %q, want %q", i, c.Attributes[i], want[i])
		}
	}
}

// TestFromEnvProblems: every bad value is reported, all at once, naming
// its variable, and a password in an endpoint is not echoed.
func TestFromEnvProblems(t *testing.T) {
	_, problems := FromEnv(lookupMap(map[string]string{
		"OTEL_TRACES_EXPORTER":        "zipkin",
		"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
		"OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://user:hunter2@collector",
		"OTEL_TRACES_SAMPLER":         "sometimes",
		"OTEL_RESOURCE_ATTRIBUTES":    "novalue",
		"OTEL_SDK_DISABLED":           "maybe",
	}))
	all := strings.Join(problems, "\n")
	for _, want := range []string{"OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_ENDPOINT",
		"OTEL_TRACES_SAMPLER", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_SDK_DISABLED"} {
		if !strings.Contains(all, want) {
			t.Errorf("no problem names %s:\n%s", want, all)
		}
	}
	if strings.Contains(all, "hunter2") {
		t.Errorf("a problem shows the endpoint's password:\n%s", all)
	}
	for _, bad := range []map[string]string{
		{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
		{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "half"},
		{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "collector:4318"},
		{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318?x=1"},
		{"OTEL_RESOURCE_ATTRIBUTES": "a=%zz"},
	} {
		if _, problems := FromEnv(lookupMap(bad)); len(problems) != 1 {
			t.Errorf("%v: problems %q, want one", bad, problems)
		}
	}
}
