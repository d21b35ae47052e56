package rules

// Public reports whether anyone, logged in or not, may make this request to
// host (see DecideHost). With Allowed it is how the proxy asks: one call
// before authentication (so public paths cost no session lookup), one after.
func (rs *Rules) Public(method, host, rawPath string) bool {
	return rs.DecideHost(method, host, rawPath, nil, false).Outcome == Public
}

// Allowed reports whether a logged-in user with these claims may make this
// request to host, and the reason (the deciding rule), for the log and for
// explain.
func (rs *Rules) Allowed(method, host, rawPath string, claims map[string]any) (bool, string) {
	d := rs.DecideHost(method, host, rawPath, claims, true)
	return d.Outcome == Allow || d.Outcome == Public, d.Reason
}
