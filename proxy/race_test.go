//go:build race

package proxy

// raceSlack: under -race, sync.Pool.Put drops a random quarter of the
// objects given back (to shake out reuse bugs), so each pooled object
// authproxy takes per request (copy buffer, late timer) is now and then
// allocated again, and the race runtime itself allocates in places the
// normal build does not. TestAllocsPerRequest allows this much above the
// exact bound there.
const raceSlack = 2

func raceNote() string { return ", +2 under -race for sync.Pool's random drops" }
