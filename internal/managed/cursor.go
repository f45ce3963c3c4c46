package managed

import (
	"encoding/base64"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/agentd/agentd/internal/store"
)

// Page sizes of list endpoints.
const (
	DefaultLimit = 20
	MaxLimit     = 100
)

// encodeCursor is the opaque next_page of a row: its creation time and id.
func encodeCursor(created time.Time, id string) *string {
	s := base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(created.UnixMicro(), 10) + ":" + id))
	return &s
}

func decodeCursor(s string) (time.Time, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return time.Time{}, "", invalid("page: not a cursor this server returned")
	}
	us, id, ok := strings.Cut(string(b), ":")
	n, err := strconv.ParseInt(us, 10, 64)
	if !ok || err != nil || id == "" {
		return time.Time{}, "", invalid("page: not a cursor this server returned")
	}
	return time.UnixMicro(n).UTC(), id, nil
}

// ListQuery is what every list endpoint reads from its query string.
type ListQuery struct {
	store.ManagedPage
}

// parseList reads limit, page, include_archived and order; allowed names
// the other parameters the endpoint reads itself. Unknown parameters are
// refused.
func parseList(tenant string, q url.Values, allowed ...string) (store.ManagedPage, error) {
	p := store.ManagedPage{Tenant: tenant, Limit: DefaultLimit}
	known := map[string]bool{"limit": true, "page": true, "include_archived": true}
	for _, a := range allowed {
		known[a] = true
	}
	for k := range q {
		if !known[k] {
			return p, invalid("unknown query parameter %q", k)
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxLimit {
			return p, invalid("limit: want an integer from 1 to %d, got %q", MaxLimit, v)
		}
		p.Limit = n
	}
	if v := q.Get("include_archived"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return p, invalid("include_archived: want true or false, got %q", v)
		}
		p.IncludeArchived = b
	}
	if v := q.Get("page"); v != "" {
		t, id, err := decodeCursor(v)
		if err != nil {
			return p, err
		}
		p.AfterCreatedAt, p.AfterID = t, id
	}
	return p, nil
}

// nextPage is the cursor after rows when the page was full.
func nextPage[T any](rows []T, limit int, key func(T) (time.Time, string)) *string {
	if len(rows) < limit || len(rows) == 0 {
		return nil
	}
	t, id := key(rows[len(rows)-1])
	return encodeCursor(t, id)
}
