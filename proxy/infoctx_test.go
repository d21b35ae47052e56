package proxy

import (
	"context"
	"testing"
)

type otherKey struct{}

// TestInfoCtx: the request's context answers for its info and passes every
// other key to its parent; a context derived from it is cancelled with the
// parent's cancelCtx, found below it, as under context.WithValue: the
// derivation allocates no more than there (a context that hid the cancelCtx
// would cost a goroutine, and its allocations, per derived context).
func TestInfoCtx(t *testing.T) {
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), otherKey{}, "kept"))
	info := &reqInfo{}
	ctx := &infoCtx{Context: parent, info: info}
	if got, _ := ctx.Value(infoKey{}).(*reqInfo); got != info {
		t.Fatalf("info %p, want %p", got, info)
	}
	if got := ctx.Value(otherKey{}); got != "kept" {
		t.Fatalf("parent's value %v, want kept", got)
	}
	if got := context.Cause(ctx); got != nil {
		t.Fatalf("cause %v before cancel", got)
	}

	valueCtx := context.WithValue(parent, infoKey{}, info)
	derive := func(c context.Context) func() {
		return func() {
			child, stop := context.WithCancel(c)
			stop()
			<-child.Done()
		}
	}
	if ours, theirs := testing.AllocsPerRun(100, derive(ctx)), testing.AllocsPerRun(100, derive(valueCtx)); ours > theirs {
		t.Errorf("deriving a context allocates %v times, %v under context.WithValue", ours, theirs)
	}

	child, stop := context.WithCancel(ctx)
	defer stop()
	cancel()
	<-child.Done() // a hang here: the child was never cancelled
	if context.Cause(child) != context.Canceled {
		t.Errorf("cause %v, want context.Canceled", context.Cause(child))
	}
}
