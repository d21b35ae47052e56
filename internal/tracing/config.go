package tracing

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Protocols of the OTLP exporter (OTEL_EXPORTER_OTLP_PROTOCOL).
const (
	ProtocolHTTP = "http/protobuf"
	ProtocolGRPC = "grpc"
)

// Config is what the standard OTEL_* variables say about traces.
type Config struct {
	// Enabled: an OTLP endpoint is set, or OTEL_TRACES_EXPORTER=otlp.
	Enabled bool
	// Protocol is ProtocolHTTP or ProtocolGRPC.
	Protocol string
	// Endpoint is the full URL the exporter sends to: for http/protobuf
	// including the /v1/traces path.
	Endpoint *url.URL
	// ServiceName is service.name (OTEL_SERVICE_NAME, default "authproxy").
	ServiceName string
	// Attributes are OTEL_RESOURCE_ATTRIBUTES, in order, decoded.
	Attributes [][2]string
	// Sampler is OTEL_TRACES_SAMPLER with its argument.
	Sampler sdktrace.Sampler
	// User records the user id on server spans (AUTHPROXY_TRACE_USER; not
	// an OTEL_* variable: the caller sets it).
	User bool
}

// FromEnv reads the OTEL_* variables through lookup (os.LookupEnv in
// production, a map in tests) and returns every problem found. Tracing is
// off unless an endpoint or OTEL_TRACES_EXPORTER=otlp is set, and always
// off with OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none.
func FromEnv(lookup func(string) (string, bool)) (Config, []string) {
	get := func(name string) string { v, _ := lookup(name); return strings.TrimSpace(v) }
	var problems []string
	add := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	c := Config{Protocol: ProtocolHTTP, ServiceName: "authproxy", Sampler: sdktrace.ParentBased(sdktrace.AlwaysSample())}

	traces, generic := get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), get("OTEL_EXPORTER_OTLP_ENDPOINT")
	switch exp := get("OTEL_TRACES_EXPORTER"); exp {
	case "":
		c.Enabled = traces != "" || generic != ""
	case "otlp":
		c.Enabled = true
	case "none":
	default:
		add("OTEL_TRACES_EXPORTER %q is not supported: use otlp or none", exp)
	}
	switch v := strings.ToLower(get("OTEL_SDK_DISABLED")); v {
	case "", "false":
	case "true":
		c.Enabled = false
	default:
		add("OTEL_SDK_DISABLED %q must be true or false", v)
	}

	protoVar := "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	proto := get(protoVar)
	if proto == "" {
		protoVar, proto = "OTEL_EXPORTER_OTLP_PROTOCOL", get("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	switch proto {
	case "", ProtocolHTTP:
	case ProtocolGRPC:
		c.Protocol = ProtocolGRPC
	default:
		add("%s %q is not supported: use http/protobuf or grpc", protoVar, proto)
	}

	// The signal-specific endpoint is used as it is; the generic one is a
	// base to which http/protobuf appends the traces path (OTLP exporter
	// specification).
	var raw, name string
	switch {
	case traces != "":
		raw, name = traces, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	case generic != "":
		raw, name = generic, "OTEL_EXPORTER_OTLP_ENDPOINT"
	case c.Protocol == ProtocolGRPC:
		raw = "http://localhost:4317"
	default:
		raw = "http://localhost:4318"
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		add("%s %q must be an http:// or https:// URL", name, redact(raw))
	} else {
		if name != "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" && c.Protocol == ProtocolHTTP {
			u = u.JoinPath("v1", "traces")
		}
		c.Endpoint = u
	}

	if v := get("OTEL_RESOURCE_ATTRIBUTES"); v != "" {
		attrs, err := parseAttributes(v)
		if err != nil {
			add("OTEL_RESOURCE_ATTRIBUTES: %v", err)
		}
		c.Attributes = attrs
		for _, a := range attrs {
			if a[0] == "service.name" {
				c.ServiceName = a[1]
			}
		}
	}
	if v := get("OTEL_SERVICE_NAME"); v != "" {
		c.ServiceName = v // wins over OTEL_RESOURCE_ATTRIBUTES
	}

	s, err := sampler(get("OTEL_TRACES_SAMPLER"), get("OTEL_TRACES_SAMPLER_ARG"))
	if err != nil {
		add("%v", err)
	} else {
		c.Sampler = s
	}
	return c, problems
}

// sampler builds the sampler OTEL_TRACES_SAMPLER names. The default,
// parentbased_always_on, samples every new trace and follows a trusted
// proxy's decision for continued ones.
func sampler(name, arg string) (sdktrace.Sampler, error) {
	ratio := func() (float64, error) {
		if arg == "" {
			return 1, nil
		}
		f, err := strconv.ParseFloat(arg, 64)
		if err != nil || f < 0 || f > 1 {
			return 0, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG %q must be a ratio from 0 to 1", arg)
		}
		return f, nil
	}
	switch name {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "traceidratio", "parentbased_traceidratio":
		f, err := ratio()
		if err != nil {
			return nil, err
		}
		if name == "traceidratio" {
			return sdktrace.TraceIDRatioBased(f), nil
		}
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(f)), nil
	}
	return nil, fmt.Errorf("OTEL_TRACES_SAMPLER %q is not supported: use always_on, always_off, traceidratio "+
		"or parentbased_ with one of them", name)
}

// parseAttributes reads key1=value1,key2=value2 with percent-encoded values
// (W3C Baggage octets, as the specification says).
func parseAttributes(s string) ([][2]string, error) {
	var out [][2]string
	for part := range strings.SplitSeq(s, ",") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return out, fmt.Errorf("%q is not key=value", part)
		}
		val, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return out, fmt.Errorf("the value of %s is not percent-encoded", k)
		}
		out = append(out, [2]string{k, val})
	}
	return out, nil
}

// redact hides a password in an endpoint URL for a message.
func redact(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		return u.Redacted()
	}
	return raw
}
