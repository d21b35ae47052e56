package redisstore

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authproxy/authproxy/session"
)

const missingSentinel = "redis-sentinel not found on PATH: apt-get install redis-sentinel (scripts/test-deps.sh installs it)"

// startSentinel runs one redis-sentinel on a free 127.0.0.1 port that
// watches the master "mymaster" at masterPort with a quorum of one, and
// declares it down after a second. It returns the sentinel's address.
func startSentinel(tb testing.TB, masterPort int) string {
	tb.Helper()
	bin, err := exec.LookPath("redis-sentinel")
	if err != nil {
		if os.Getenv("AUTHPROXY_E2E") == "1" {
			tb.Fatal(missingSentinel)
		}
		tb.Skip(missingSentinel)
	}
	dir := tb.TempDir()
	for attempt := 1; ; attempt++ {
		port := freePort(tb)
		conf := filepath.Join(dir, "sentinel.conf")
		err := os.WriteFile(conf, fmt.Appendf(nil, `port %d
bind 127.0.0.1
daemonize no
dir %s
logfile %s
sentinel monitor mymaster 127.0.0.1 %d 1
sentinel down-after-milliseconds mymaster 1000
sentinel failover-timeout mymaster 10000
sentinel parallel-syncs mymaster 1
`, port, dir, filepath.Join(dir, "sentinel.log"), masterPort), 0o600)
		if err != nil {
			tb.Fatal(err)
		}
		cmd := exec.Command(bin, conf)
		setDeathSignal(cmd)
		if err := cmd.Start(); err != nil {
			tb.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		tb.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-exited
		})
		addr := "127.0.0.1:" + strconv.Itoa(port)
		if sentinelUp(tb, addr, exited) {
			return addr
		}
		if attempt == 3 {
			log, _ := os.ReadFile(filepath.Join(dir, "sentinel.log"))
			tb.Fatalf("redis-sentinel exited (its port may have been taken):\n%s", log)
		}
	}
}

// sentinelUp waits until the Sentinel at addr answers PING (true) or its
// process exits (false).
func sentinelUp(tb testing.TB, addr string, exited chan error) bool {
	tb.Helper()
	c := redis.NewSentinelClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	deadline := time.Now().Add(hang)
	for {
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			return false
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return true
		}
		if time.Now().After(deadline) {
			tb.Fatalf("redis-sentinel: no PING answer within %v: %v", hang, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCacheSentinelFailover: a master, a replica and a Sentinel. The master
// is killed; after the failover both replicas of authproxy serve the
// session again from the promoted server, the cache was emptied across the
// switch (the first answer comes from a GET), and revocations announced on
// the new master reach the other replica's cache.
func TestCacheSentinelFailover(t *testing.T) {
	master := startRedis(t)
	replicaServer := startRedisWith(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.port))
	sentinel := startSentinel(t, master.port)
	ctx := context.Background()

	// Wait until the replica is in sync and the Sentinel knows it, or the
	// Sentinel would have nothing to promote.
	sc := redis.NewSentinelClient(&redis.Options{Addr: sentinel})
	t.Cleanup(func() { sc.Close() })
	rc := replicaServer.Client(t)
	waitFor(t, "the replica in sync and known to the Sentinel", func() bool {
		info, err := rc.Info(ctx, "replication").Result()
		if err != nil || !strings.Contains(info, "master_link_status:up") {
			return false
		}
		replicas, err := sc.Replicas(ctx, "mymaster").Result()
		if err != nil || len(replicas) != 1 {
			return false
		}
		flags := replicas[0]["flags"]
		return flags == "slave"
	})

	failoverClient := func(tb testing.TB) redis.UniversalClient {
		c := redis.NewUniversalClient(&redis.UniversalOptions{
			Addrs: []string{sentinel}, MasterName: "mymaster",
			ContextTimeoutEnabled: true, DialTimeout: time.Second,
		})
		tb.Cleanup(func() { c.Close() })
		return c
	}
	a := newReplica(t, master, replicaOpts{cache: 100, client: failoverClient(t)})
	bClient := failoverClient(t)
	g := &gets{}
	bClient.AddHook(g)
	b := newReplica(t, master, replicaOpts{cache: 100, cacheTTL: time.Hour, client: bClient})
	waitTrusted(t, b)

	req := save(t, a.Store, nil, session.Session{User: "ada", Expiry: time.Now().Add(time.Hour)})
	mc := master.Client(t)
	if n, err := mc.Do(ctx, "WAIT", 1, 60000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT for the replica: %d, %v", n, err)
	}
	for range 2 {
		if _, err := b.Load(req); err != nil {
			t.Fatal(err)
		}
	}
	g.n.Store(0)
	if _, err := b.Load(req); err != nil || g.n.Load() != 0 {
		t.Fatalf("before the failover: Load = %v with %d GETs, want a hit", err, g.n.Load())
	}

	master.Stop()
	start := time.Now()
	waitFor(t, "b distrusting its cache once the master is gone", func() bool { return !b.cache.trusted() })
	var before int64
	waitFor(t, "b serving the session from the promoted replica", func() bool {
		before = g.n.Load()
		_, err := b.Load(req)
		if err != nil && !isUnavailable(err) {
			t.Fatalf("during the failover: Load = %v, want the session or unavailable", err)
		}
		return err == nil
	})
	t.Logf("served again %v after the master was killed", time.Since(start).Round(time.Millisecond))
	if g.n.Load() == before {
		t.Error("the first Load after the failover was a cache hit: the cache survived the switch")
	}
	if info, err := rc.Info(ctx, "replication").Result(); err != nil || !strings.Contains(info, "role:master") {
		t.Fatalf("the replica was not promoted: %v\n%s", err, info)
	}

	// Announcements flow on the new master: a's revocation reaches b.
	waitTrusted(t, b)
	waitFor(t, "a serving again", func() bool { _, err := a.Load(req); return err == nil })
	for range 2 {
		if _, err := b.Load(req); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Logout(httptest.NewRecorder(), req); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b refusing the session logged out on a after the failover", func() bool {
		_, err := b.Load(req)
		return isNoSession(err)
	})
}
