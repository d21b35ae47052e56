package e2e

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's chromium package.
const chromiumPath = "/usr/bin/chromium"

// requireChromium fails t when Chromium is missing, saying how to install it.
func requireChromium(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("e2e: Chromium not found at %s: apt-get install chromium (`make test` does it when run as root): %v", chromiumPath, err)
	}
	return chromiumPath
}

// TestChromiumLogin logs in with a real browser: headless Chromium opens a
// protected page through the proxy, fills the provider's login and consent
// forms, and lands on the upstream page showing the user.
func TestChromiumLogin(t *testing.T) {
	s := newStack(t, stackOptions{})
	execPath := requireChromium(t)

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(execPath),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		// Without these, Chromium's own background connections fail slowly
		// on a closed network.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		// Chromium does not read SSL_CERT_FILE, so it is told to accept the
		// provider's certificate from the suite's throwaway CA. The proxy
		// still verifies that certificate properly (SSL_CERT_FILE), and so
		// does the scripted browser of the other tests.
		chromedp.Flag("ignore-certificate-errors", true),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc) // kills Chromium and waits for it
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelBrowser)
	ctx, cancel := context.WithTimeout(browserCtx, hangTimeout)
	defer cancel()

	const user = "heidi"
	start := s.ProxyURL("/dashboard?tab=overview")
	err := chromedp.Do(ctx,
		chromedp.Navigate(start),
		chromedp.WaitVisible(chromedp.CSS(`input[name="login"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="login"]`), user),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), "any password works"),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitReady(chromedp.CSS(`input[name="prompt"][value="consent"]`)),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#user`)),
	)
	if err != nil {
		t.Fatalf("browsing: %v\n%s", err, describePage(browserCtx))
	}
	shown, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#user`)))
	if err != nil {
		t.Fatalf("read the user shown: %v", err)
	}
	landed, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatalf("read the location: %v", err)
	}
	if landed != start {
		t.Errorf("landed on %s, want %s", landed, start)
	}
	if strings.TrimSpace(shown) != user {
		t.Errorf("upstream page shows user %q, want %q", shown, user)
	}
	seen := s.Upstream.ByRequestURI("/dashboard?tab=overview")
	if len(seen) == 0 {
		t.Fatalf("upstream never saw /dashboard?tab=overview")
	}
	for _, r := range seen {
		if got := r.Header.Values("X-User"); len(got) != 1 || got[0] != user {
			t.Errorf("upstream X-User = %q, want [%q]", got, user)
		}
	}
}

// describePage returns where the browser is and what it shows, for a failure
// message; it is bounded so a hung browser cannot hang the test.
func describePage(browserCtx context.Context) string {
	ctx, cancel := context.WithTimeout(browserCtx, 5*time.Second)
	defer cancel()
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		return "(page unavailable: " + err.Error() + ")"
	}
	html, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
	if err != nil {
		return "at " + loc + " (no HTML: " + err.Error() + ")"
	}
	return "at " + loc + ":\n" + html
}
