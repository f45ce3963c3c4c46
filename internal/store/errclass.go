package store

import "sync"

// What a backend's errors mean for callers that do not know the backend:
// each backend registers its classifiers (as database/sql drivers register
// themselves), so that the API answers a store failure as the store's
// circuit breaker counts it, from one list per backend.
var (
	classMu     sync.RWMutex
	unavailable []func(error) bool
	full        []func(error) bool
)

// RegisterErrorClasses adds a backend's classifiers: isUnavailable reports
// an error that says the database cannot be reached or used (connection
// refused or lost, server shutting down, I/O error); isFull one that says
// its disk is full. Either may be nil.
func RegisterErrorClasses(isUnavailable, isFull func(error) bool) {
	classMu.Lock()
	defer classMu.Unlock()
	if isUnavailable != nil {
		unavailable = append(unavailable, isUnavailable)
	}
	if isFull != nil {
		full = append(full, isFull)
	}
}

// IsUnavailable reports whether a registered backend says err means the
// store cannot be reached or used.
func IsUnavailable(err error) bool { return classify(&unavailable, err) }

// IsFull reports whether a registered backend says err means the store's
// disk is full.
func IsFull(err error) bool { return classify(&full, err) }

func classify(fns *[]func(error) bool, err error) bool {
	if err == nil {
		return false
	}
	classMu.RLock()
	defer classMu.RUnlock()
	for _, f := range *fns {
		if f(err) {
			return true
		}
	}
	return false
}
