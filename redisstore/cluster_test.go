package redisstore

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// startCluster runs a Redis Cluster of three masters (no replicas) on free
// 127.0.0.1 ports, its bus ports free too, and returns their addresses
// once every node reports cluster_state:ok.
func startCluster(tb testing.TB) []string {
	tb.Helper()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		tb.Fatal("redis-cli not found on PATH: it comes with redis-server (apt-get install redis-server)")
	}
	var addrs []string
	for range 3 {
		n := startRedisWith(tb, "--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(freePort(tb)),
			"--cluster-node-timeout", "2000")
		addrs = append(addrs, n.Addr())
	}
	args := append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		waitFor(tb, "cluster_state:ok on "+a, func() bool {
			info, err := c.ClusterInfo(context.Background()).Result()
			return err == nil && strings.Contains(info, "cluster_state:ok")
		})
		c.Close()
	}
	return addrs
}

// TestCacheCluster runs the cache's tests against a Redis Cluster through
// go-redis's ClusterClient: announcements are PUBLISHed on the node that
// owns the channel's slot, where subscribers connect, and a Cluster
// forwards them to every node.
//
//   - every way of ending a session reaches the other replica's cache;
//   - the fill race, fewer iterations than on one server;
//   - a subscriber connected to another node (as after a reshard) receives
//     the announcements too.
func TestCacheCluster(t *testing.T) {
	addrs := startCluster(t)
	client := func(tb testing.TB) redis.UniversalClient {
		c := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: addrs, ContextTimeoutEnabled: true, DialTimeout: time.Second})
		if _, ok := c.(*redis.ClusterClient); !ok {
			tb.Fatalf("NewUniversalClient with %d addresses gave a %T, want a ClusterClient", len(addrs), c)
		}
		tb.Cleanup(func() { c.Close() })
		return c
	}
	a := newReplica(t, nil, replicaOpts{cache: 100, client: client(t)})
	bc := client(t)
	g := &gets{}
	bc.AddHook(g)
	b := newReplica(t, nil, replicaOpts{cache: 100, cacheTTL: time.Hour, client: bc})

	t.Run("revocations", func(t *testing.T) { checkRevocations(t, a, b) })
	t.Run("fill race", func(t *testing.T) { checkFillRace(t, a, b, g, 15) })
	t.Run("subscriber on another node", func(t *testing.T) {
		ctx := context.Background()
		owner, err := bc.(*redis.ClusterClient).MasterForKey(ctx, a.channel())
		if err != nil {
			t.Fatal(err)
		}
		for _, addr := range addrs {
			if addr == owner.Options().Addr {
				continue
			}
			other := redis.NewClient(&redis.Options{Addr: addr})
			defer other.Close()
			ps := other.Subscribe(ctx, a.channel())
			defer ps.Close()
			if _, err := ps.Receive(ctx); err != nil { // the subscription
				t.Fatal(err)
			}
			if err := a.Revoke(ctx, newTicket().id); err != ErrNotFound {
				t.Fatalf("Revoke of an unknown id = %v, want ErrNotFound", err)
			}
			rctx, cancel := context.WithTimeout(ctx, hang)
			msg, err := ps.ReceiveMessage(rctx)
			cancel()
			if err != nil {
				t.Fatalf("a subscriber on %s (the channel's slot is on %s) got no announcement: %v", addr, owner.Options().Addr, err)
			}
			t.Logf("announcement %q received on %s", msg.Payload, addr)
		}
	})
}
