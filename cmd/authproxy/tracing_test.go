package main

import (
	"strings"
	"testing"
)

// minimalEnv is the least configuration that loads.
func minimalEnv(extra map[string]string) map[string]string {
	m := map[string]string{"AUTHPROXY_UPSTREAM": "http://127.0.0.1:8080", "AUTHPROXY_ISSUER": "https://idp.example/",
		"AUTHPROXY_CLIENT_ID": "c", "AUTHPROXY_CLIENT_SECRET": "s"}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

// TestLoadConfigTracing: the OTEL_* variables come through run's lookup,
// like every other setting; tracing is off without them.
func TestLoadConfigTracing(t *testing.T) {
	cfg, err := loadConfig(envFrom(t, minimalEnv(nil)))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Tracing.Enabled || cfg.Tracing.User {
		t.Errorf("tracing on by default: %+v", cfg.Tracing)
	}
	cfg, err = loadConfig(envFrom(t, minimalEnv(map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SERVICE_NAME": "edge", "AUTHPROXY_TRACE_USER": "true"})))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Tracing.Enabled || !cfg.Tracing.User || cfg.Tracing.ServiceName != "edge" ||
		cfg.Tracing.Endpoint.String() != "http://127.0.0.1:4318/v1/traces" {
		t.Errorf("tracing: %+v", cfg.Tracing)
	}
}

// TestLoadConfigTracingProblems: bad OTEL_* values are listed with our own
// settings' problems, all at once.
func TestLoadConfigTracingProblems(t *testing.T) {
	for _, extra := range []map[string]string{
		{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json", "OTEL_TRACES_SAMPLER": "often", "AUTHPROXY_TRACE_USER": "yes"},
		{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json", "OTEL_TRACES_SAMPLER": "often", "AUTHPROXY_TRACE_USER": "yes", "AUTHPROXY_UPSTREAM": "ftp://x"},
	} {
		_, err := loadConfig(envFrom(t, minimalEnv(extra)))
		if err == nil {
			t.Fatalf("%v: loaded", extra)
		}
		for _, want := range []string{"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_TRACES_SAMPLER", "AUTHPROXY_TRACE_USER"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%v: error does not name %s:\n%v", extra, want, err)
			}
		}
		if _, ok := extra["AUTHPROXY_UPSTREAM"]; ok && !strings.Contains(err.Error(), "AUTHPROXY_UPSTREAM") {
			t.Errorf("error does not name AUTHPROXY_UPSTREAM:\n%v", err)
		}
	}
}

// TestCheckConfigTracing: run reads the OTEL_* variables through its
// lookup, as the server start does: check-config reports tracing, and a
// bad OTEL_* value fails it.
func TestCheckConfigTracing(t *testing.T) {
	var out, errOut strings.Builder
	lookup := envFrom(t, minimalEnv(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}))
	if err := run(t.Context(), []string{"check-config"}, lookup, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "OTLP http/protobuf to http://127.0.0.1:4318/v1/traces as authproxy") {
		t.Errorf("check-config does not report tracing:\n%s", out.String())
	}
	out.Reset()
	if err := run(t.Context(), []string{"check-config"}, envFrom(t, minimalEnv(nil)), &out, &errOut); err != nil ||
		!strings.Contains(out.String(), "tracing") || !strings.Contains(out.String(), "off") {
		t.Errorf("check-config without OTEL_*: %v\n%s", err, out.String())
	}
	err := run(t.Context(), []string{"check-config"}, envFrom(t, minimalEnv(map[string]string{"OTEL_TRACES_SAMPLER": "often"})), &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "OTEL_TRACES_SAMPLER") {
		t.Errorf("check-config with a bad sampler: %v", err)
	}
}
