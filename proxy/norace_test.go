//go:build !race

package proxy

// raceSlack is 0 without the race detector: the bound is exact.
const raceSlack = 0

func raceNote() string { return "" }
