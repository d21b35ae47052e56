// Package metrics holds authproxy's Prometheus metrics. It is a package of
// its own because both proxy (requests, upstream) and oidc (logins,
// provider) report into it, and neither should define the other's metrics;
// each declares the small observer interface it needs and this type
// satisfies them.
package metrics

import (
	"context"
	"math"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics records what the proxy does. All metric names start with
// "authproxy_".
type Metrics struct {
	reg             *prometheus.Registry
	requests        *prometheus.CounterVec
	loginsStarted   prometheus.Counter
	loginsCompleted prometheus.Counter
	loginsFailed    *prometheus.CounterVec
	logouts         prometheus.Counter
	refreshes       prometheus.Counter
	providerErrors  *prometheus.CounterVec
	upstreamErrors  *prometheus.CounterVec
	upstreamLatency prometheus.Histogram
	reloads         *prometheus.CounterVec
	lastReload      prometheus.Gauge
	// outcomes caches the per-outcome counters (string → Counter):
	// looking up the label values on every request costs a hash each time.
	outcomes sync.Map
}

// New registers the metrics, with build information for version.
func New(version string) *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authproxy_requests_total",
			Help: "Requests by outcome: proxied, login_redirect, unauthenticated (401), forbidden (403), auth, probe, error.",
		}, []string{"outcome"}),
		loginsStarted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "authproxy_logins_started_total", Help: "Logins sent to the provider.",
		}),
		loginsCompleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "authproxy_logins_completed_total", Help: "Logins that ended with a session.",
		}),
		loginsFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authproxy_logins_failed_total", Help: "Logins that failed, by reason (invalid_state, invalid_id_token, provider_unavailable, ...).",
		}, []string{"reason"}),
		logouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "authproxy_logouts_total", Help: "Logouts.",
		}),
		refreshes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "authproxy_token_refreshes_total", Help: "Tokens renewed at the provider with a refresh token.",
		}),
		providerErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authproxy_provider_errors_total", Help: "Failed calls to the identity provider, by operation.",
		}, []string{"op"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authproxy_upstream_errors_total", Help: "Upstream requests that failed, by status sent (502, 504).",
		}, []string{"status"}),
		upstreamLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "authproxy_upstream_response_seconds",
			Help:    "Time from forwarding a request to the upstream's response headers.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authproxy_config_reloads_total", Help: "Configuration reloads (SIGHUP or a changed file), by result: ok, or error (the old configuration stays).",
		}, []string{"result"}),
		lastReload: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "authproxy_config_last_reload_success_timestamp_seconds", Help: "Unix time of the last configuration put in force (the start, or the last successful reload).",
		}),
	}
	// Both results from the start, so that a rate or an alert on errors
	// has a series before the first reload.
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("error")
	m.lastReload.SetToCurrentTime()
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "authproxy_build_info", Help: "Always 1; labels carry the version.",
	}, []string{"version", "goversion"})
	build.WithLabelValues(version, runtime.Version()).Set(1)
	reg.MustRegister(m.requests, m.loginsStarted, m.loginsCompleted, m.loginsFailed, m.logouts, m.refreshes,
		m.providerErrors, m.upstreamErrors, m.upstreamLatency, m.reloads, m.lastReload, build)
	return m
}

// ActiveSessions publishes authproxy_active_sessions from count, which is
// asked at every scrape (a server-side store knows its sessions; the cookie
// store does not, so it has no such metric). A failed count reads NaN.
func (m *Metrics) ActiveSessions(count func(context.Context) (int, error)) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "authproxy_active_sessions", Help: "Sessions in the server-side store that have not expired.",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		n, err := count(ctx)
		if err != nil {
			return math.NaN()
		}
		return float64(n)
	}))
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Request counts one request by outcome.
func (m *Metrics) Request(outcome string) {
	c, ok := m.outcomes.Load(outcome)
	if !ok {
		c, _ = m.outcomes.LoadOrStore(outcome, m.requests.WithLabelValues(outcome))
	}
	c.(prometheus.Counter).Inc()
}

// UpstreamResponse records the upstream's time to response headers.
func (m *Metrics) UpstreamResponse(d time.Duration) { m.upstreamLatency.Observe(d.Seconds()) }

// UpstreamError counts a request the upstream failed, by the status sent.
func (m *Metrics) UpstreamError(status int) {
	m.upstreamErrors.WithLabelValues(strconv.Itoa(status)).Inc()
}

// LoginStarted counts a login sent to the provider.
func (m *Metrics) LoginStarted() { m.loginsStarted.Inc() }

// LoginCompleted counts a login that ended with a session.
func (m *Metrics) LoginCompleted() { m.loginsCompleted.Inc() }

// LoginFailed counts a failed login by reason.
func (m *Metrics) LoginFailed(reason string) { m.loginsFailed.WithLabelValues(reason).Inc() }

// Logout counts a logout.
func (m *Metrics) Logout() { m.logouts.Inc() }

// TokenRefreshed counts a renewal of tokens with a refresh token.
func (m *Metrics) TokenRefreshed() { m.refreshes.Inc() }

// ProviderError counts a failed call to the provider by operation
// (discovery, token, jwks).
func (m *Metrics) ProviderError(op string) { m.providerErrors.WithLabelValues(op).Inc() }

// ConfigReloaded counts a configuration reload; a successful one also
// records its time.
func (m *Metrics) ConfigReloaded(ok bool) {
	if !ok {
		m.reloads.WithLabelValues("error").Inc()
		return
	}
	m.reloads.WithLabelValues("ok").Inc()
	m.lastReload.SetToCurrentTime()
}
