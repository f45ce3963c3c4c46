package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store"
)

// Contracts of store.Managed the suite pins down beyond its doc comments:
//   - every backend implements store.Managed;
//   - config and data JSON round-trip byte for byte, times to the
//     microsecond in UTC;
//   - pages never repeat or skip a row, newest first by default, oldest
//     first with Ascending; rows created in the same microsecond are
//     ordered by id;
//   - SharedTenant's agents are visible to every tenant and changed by none.

func exerciseManaged[TTx any](t *testing.T, setup setupFunc[TTx]) {
	managed := func(t *testing.T, s Store[TTx]) store.Managed {
		t.Helper()
		m, ok := s.(store.Managed)
		require.True(t, ok, "%T does not implement store.Managed", s)
		return m
	}
	t0 := at("2026-01-02T03:04:05.123456Z")

	t.Run("AgentVersions", func(t *testing.T) {
		s, ctx := setup(t)
		m := managed(t, s)
		id := newID("agent")
		a, err := m.CreateManagedAgent(ctx, store.ManagedAgent{ID: id, Tenant: "t1", Config: js(`{"name": "a1"}`), CreatedAt: t0})
		require.NoError(t, err)
		require.Equal(t, int64(1), a.Version)
		_, err = m.CreateManagedAgent(ctx, store.ManagedAgent{ID: id, Tenant: "t1", Config: js(`{}`)})
		require.ErrorIs(t, err, store.ErrConflict)

		got, err := m.GetManagedAgent(ctx, "t1", id, 0)
		require.NoError(t, err)
		require.Equal(t, `{"name": "a1"}`, string(got.Config))
		require.Equal(t, utc(t0), got.CreatedAt)
		require.Equal(t, utc(t0), got.UpdatedAt)
		require.True(t, got.ArchivedAt.IsZero())
		_, err = m.GetManagedAgent(ctx, "t2", id, 0)
		require.ErrorIs(t, err, store.ErrNotFound, "another tenant's agent")

		t1 := t0.Add(time.Minute)
		up, err := m.UpdateManagedAgent(ctx, store.UpdateManagedAgentParams{Tenant: "t1", ID: id, ExpectedVersion: 1,
			Config: js(`{"name": "a2"}`), At: t1})
		require.NoError(t, err)
		require.Equal(t, int64(2), up.Version)
		require.Equal(t, int64(2), up.Latest)
		require.Equal(t, utc(t0), up.CreatedAt)
		require.Equal(t, utc(t1), up.UpdatedAt)
		_, err = m.UpdateManagedAgent(ctx, store.UpdateManagedAgentParams{Tenant: "t1", ID: id, ExpectedVersion: 1, Config: js(`{}`)})
		require.ErrorIs(t, err, store.ErrConflict, "stale version")
		_, err = m.UpdateManagedAgent(ctx, store.UpdateManagedAgentParams{Tenant: "t2", ID: id, ExpectedVersion: 2, Config: js(`{}`)})
		require.ErrorIs(t, err, store.ErrNotFound)

		v1, err := m.GetManagedAgent(ctx, "t1", id, 1)
		require.NoError(t, err)
		require.Equal(t, `{"name": "a1"}`, string(v1.Config))
		require.Equal(t, int64(1), v1.Version)
		require.Equal(t, int64(2), v1.Latest)
		_, err = m.GetManagedAgent(ctx, "t1", id, 3)
		require.ErrorIs(t, err, store.ErrNotFound)

		vs, err := m.ListManagedAgentVersions(ctx, "t1", id, 0, 0)
		require.NoError(t, err)
		require.Len(t, vs, 2)
		require.Equal(t, []int64{2, 1}, []int64{vs[0].Version, vs[1].Version})
		vs, err = m.ListManagedAgentVersions(ctx, "t1", id, 1, 2)
		require.NoError(t, err)
		require.Len(t, vs, 1)
		require.Equal(t, int64(1), vs[0].Version)
		_, err = m.ListManagedAgentVersions(ctx, "t2", id, 0, 0)
		require.ErrorIs(t, err, store.ErrNotFound)

		arch, err := m.ArchiveManagedAgent(ctx, "t1", id, t1)
		require.NoError(t, err)
		require.Equal(t, utc(t1), arch.ArchivedAt)
		arch, err = m.ArchiveManagedAgent(ctx, "t1", id, t1.Add(time.Hour))
		require.NoError(t, err)
		require.Equal(t, utc(t1), arch.ArchivedAt, "archiving twice keeps the first time")
		_, err = m.ArchiveManagedAgent(ctx, "t2", id, t1)
		require.ErrorIs(t, err, store.ErrNotFound)
	})

	t.Run("SharedAgents", func(t *testing.T) {
		s, ctx := setup(t)
		m := managed(t, s)
		id := newID("config")
		_, err := m.CreateManagedAgent(ctx, store.ManagedAgent{ID: id, Tenant: store.SharedTenant, Config: js(`{}`)})
		require.NoError(t, err)
		for _, tenant := range []string{"t1", "t2"} {
			got, err := m.GetManagedAgent(ctx, tenant, id, 0)
			require.NoError(t, err, tenant)
			require.Equal(t, store.SharedTenant, got.Tenant)
			page, err := m.ListManagedAgents(ctx, store.ManagedPage{Tenant: tenant})
			require.NoError(t, err)
			require.Len(t, page, 1)
		}
		_, err = m.UpdateManagedAgent(ctx, store.UpdateManagedAgentParams{Tenant: "t1", ID: id, ExpectedVersion: 1, Config: js(`{}`)})
		require.ErrorIs(t, err, store.ErrNotFound, "a tenant cannot change a shared agent")
		_, err = m.ArchiveManagedAgent(ctx, "t1", id, time.Time{})
		require.ErrorIs(t, err, store.ErrNotFound)
		_, err = m.UpdateManagedAgent(ctx, store.UpdateManagedAgentParams{Tenant: store.SharedTenant, ID: id, ExpectedVersion: 1, Config: js(`{"v":2}`)})
		require.NoError(t, err)
	})

	t.Run("AgentPages", func(t *testing.T) {
		s, ctx := setup(t)
		m := managed(t, s)
		var ids []string
		for i := range 5 {
			id := newID("agent")
			// Two share a creation time: the id orders them.
			created := t0.Add(time.Duration(min(i, 3)) * time.Second)
			_, err := m.CreateManagedAgent(ctx, store.ManagedAgent{ID: id, Tenant: "t1", Config: js(`{}`), CreatedAt: created})
			require.NoError(t, err)
			ids = append(ids, id)
		}
		_, err := m.ArchiveManagedAgent(ctx, "t1", ids[0], time.Time{})
		require.NoError(t, err)
		walk := func(p store.ManagedPage) []string {
			var got []string
			for {
				page, err := m.ListManagedAgents(ctx, p)
				require.NoError(t, err)
				if len(page) == 0 {
					return got
				}
				for _, a := range page {
					got = append(got, a.ID)
				}
				last := page[len(page)-1]
				p.AfterCreatedAt, p.AfterID = last.CreatedAt, last.ID
			}
		}
		all := walk(store.ManagedPage{Tenant: "t1", Limit: 2, IncludeArchived: true})
		require.Len(t, all, 5)
		require.ElementsMatch(t, ids, all)
		require.Equal(t, all[4], ids[0], "newest first: the first created comes last")
		asc := walk(store.ManagedPage{Tenant: "t1", Limit: 2, Ascending: true, IncludeArchived: true})
		for i := range asc {
			require.Equal(t, all[len(all)-1-i], asc[i])
		}
		live := walk(store.ManagedPage{Tenant: "t1", Limit: 3})
		require.Len(t, live, 4, "archived left out")
		require.NotContains(t, live, ids[0])
		none := walk(store.ManagedPage{Tenant: "t2"})
		require.Empty(t, none)
	})

	t.Run("Environments", func(t *testing.T) {
		s, ctx := setup(t)
		m := managed(t, s)
		id := newID("env")
		e, err := m.CreateManagedEnvironment(ctx, store.ManagedEnvironment{ID: id, Tenant: "t1", Data: js(`{"name":"e"}`)})
		require.NoError(t, err)
		require.Equal(t, e.CreatedAt, e.UpdatedAt)
		got, err := m.GetManagedEnvironment(ctx, "t1", id)
		require.NoError(t, err)
		require.Equal(t, e, got)
		_, err = m.GetManagedEnvironment(ctx, "t2", id)
		require.ErrorIs(t, err, store.ErrNotFound)
		up, err := m.UpdateManagedEnvironment(ctx, store.ManagedEnvironment{ID: id, Tenant: "t1", Data: js(`{"name":"f"}`), UpdatedAt: t0})
		require.NoError(t, err)
		require.Equal(t, `{"name":"f"}`, string(up.Data))
		require.Equal(t, utc(t0), up.UpdatedAt)
		_, err = m.UpdateManagedEnvironment(ctx, store.ManagedEnvironment{ID: id, Tenant: "t2", Data: js(`{}`)})
		require.ErrorIs(t, err, store.ErrNotFound)
		list, err := m.ListManagedEnvironments(ctx, store.ManagedPage{Tenant: "t1"})
		require.NoError(t, err)
		require.Len(t, list, 1)
		arch, err := m.ArchiveManagedEnvironment(ctx, "t1", id, t0)
		require.NoError(t, err)
		require.Equal(t, utc(t0), arch.ArchivedAt)
		list, err = m.ListManagedEnvironments(ctx, store.ManagedPage{Tenant: "t1"})
		require.NoError(t, err)
		require.Empty(t, list)
		require.ErrorIs(t, m.DeleteManagedEnvironment(ctx, "t2", id), store.ErrNotFound)
		require.NoError(t, m.DeleteManagedEnvironment(ctx, "t1", id))
		_, err = m.GetManagedEnvironment(ctx, "t1", id)
		require.ErrorIs(t, err, store.ErrNotFound)
	})

	t.Run("Sessions", func(t *testing.T) {
		s, ctx := setup(t)
		m := managed(t, s)
		newSession := func(tenant, agent string, version int64, created time.Time) store.ManagedSession {
			t.Helper()
			ms, err := m.CreateManagedSession(ctx, store.ManagedSession{ID: newID("sesn"), Tenant: tenant, AgentID: agent,
				AgentVersion: version, EnvironmentID: "env_1", ConversationID: newID("conv"), Status: "idle",
				Data: js(`{"title":"x"}`), CreatedAt: created})
			require.NoError(t, err)
			return ms
		}
		a := newSession("t1", "agent_a", 1, t0)
		b := newSession("t1", "agent_a", 2, t0.Add(time.Second))
		c := newSession("t1", "agent_b", 1, t0.Add(2*time.Second))
		newSession("t2", "agent_a", 1, t0)

		got, err := m.GetManagedSession(ctx, "t1", a.ID)
		require.NoError(t, err)
		require.Equal(t, a, got)
		conv, err := s.GetConversation(ctx, "t1", a.ConversationID)
		require.NoError(t, err, "the session's conversation is created with it")
		require.Equal(t, "agent_a", conv.Agent)
		_, err = m.GetManagedSession(ctx, "t2", a.ID)
		require.ErrorIs(t, err, store.ErrNotFound)
		_, err = m.CreateManagedSession(ctx, store.ManagedSession{ID: newID("sesn"), Tenant: "t1", AgentID: "x",
			ConversationID: a.ConversationID, Status: "idle", Data: js(`{}`)})
		require.ErrorIs(t, err, store.ErrConflict, "a conversation belongs to one session")

		ids := func(p store.ListManagedSessionsParams) []string {
			t.Helper()
			list, err := m.ListManagedSessions(ctx, p)
			require.NoError(t, err)
			var out []string
			for _, s := range list {
				out = append(out, s.ID)
			}
			return out
		}
		page := store.ManagedPage{Tenant: "t1"}
		require.Equal(t, []string{c.ID, b.ID, a.ID}, ids(store.ListManagedSessionsParams{ManagedPage: page}))
		require.Equal(t, []string{b.ID, a.ID}, ids(store.ListManagedSessionsParams{ManagedPage: page, AgentID: "agent_a"}))
		require.Equal(t, []string{b.ID}, ids(store.ListManagedSessionsParams{ManagedPage: page, AgentID: "agent_a", AgentVersion: 2}))
		require.Equal(t, []string{c.ID, b.ID}, ids(store.ListManagedSessionsParams{ManagedPage: page, CreatedAfter: t0}))
		require.Equal(t, []string{c.ID, b.ID, a.ID}, ids(store.ListManagedSessionsParams{ManagedPage: page, CreatedAfter: t0, CreatedAfterInclusive: true}))
		require.Equal(t, []string{a.ID}, ids(store.ListManagedSessionsParams{ManagedPage: page, CreatedBefore: b.CreatedAt}))

		b.Status, b.Data = "running", js(`{"title":"y"}`)
		up, err := m.UpdateManagedSession(ctx, b)
		require.NoError(t, err)
		require.Equal(t, "running", up.Status)
		require.Equal(t, `{"title":"y"}`, string(up.Data))
		require.Equal(t, []string{b.ID}, ids(store.ListManagedSessionsParams{ManagedPage: page, Statuses: []string{"running"}}))

		arch, err := m.ArchiveManagedSession(ctx, "t1", c.ID, "terminated", t0.Add(time.Hour))
		require.NoError(t, err)
		require.Equal(t, "terminated", arch.Status)
		require.Equal(t, utc(t0.Add(time.Hour)), arch.ArchivedAt)
		require.Equal(t, []string{b.ID, a.ID}, ids(store.ListManagedSessionsParams{ManagedPage: page}))
		page.IncludeArchived = true
		page.Ascending = true
		require.Equal(t, []string{a.ID, b.ID, c.ID}, ids(store.ListManagedSessionsParams{ManagedPage: page}))

		// A session's turns are the runs on its conversation.
		none, err := m.ListConversationRuns(ctx, "t1", b.ConversationID)
		require.NoError(t, err)
		require.Empty(t, none)
		r1 := store.Run{ID: newID("run"), Tenant: "t1", Agent: "agent_a", ConversationID: b.ConversationID, Status: store.RunQueued,
			CreatedAt: t0}
		r2 := r1
		r2.ID, r2.CreatedAt = newID("run"), t0.Add(time.Second)
		require.NoError(t, s.CreateRun(ctx, r2))
		require.NoError(t, s.CreateRun(ctx, r1))
		runs, err := m.ListConversationRuns(ctx, "t1", b.ConversationID)
		require.NoError(t, err)
		require.Len(t, runs, 2)
		require.Equal(t, []string{r1.ID, r2.ID}, []string{runs[0].ID, runs[1].ID}, "oldest first")
		runs, err = m.ListConversationRuns(ctx, "t2", b.ConversationID)
		require.NoError(t, err)
		require.Empty(t, runs, "another tenant's")

		// Events no run produces: appended with an update, in order,
		// the tenant's only, deleted with the session.
		evs, err := m.ListManagedSessionEvents(ctx, "t1", a.ID)
		require.NoError(t, err)
		require.Empty(t, evs)
		a.Data = js(`{"title":"z"}`)
		a.UpdatedAt = t0.Add(3 * time.Second)
		up, ev1, err := m.UpdateManagedSessionEvent(ctx, a, store.ManagedSessionEvent{ID: "sevt_1", Type: "session.updated", Data: js(`{"id":"sevt_1"}`)})
		require.NoError(t, err)
		require.Equal(t, `{"title":"z"}`, string(up.Data))
		require.Equal(t, utc(t0.Add(3*time.Second)), up.UpdatedAt)
		require.Equal(t, int64(1), ev1.Seq)
		require.Equal(t, up.UpdatedAt, ev1.CreatedAt, "the event is at the update's time")
		a.UpdatedAt = time.Time{}
		_, ev2, err := m.UpdateManagedSessionEvent(ctx, a, store.ManagedSessionEvent{ID: "sevt_2", Type: "session.updated", Data: js(`{"id":"sevt_2"}`)})
		require.NoError(t, err)
		require.Equal(t, int64(2), ev2.Seq)
		_, _, err = m.UpdateManagedSessionEvent(ctx, store.ManagedSession{ID: a.ID, Tenant: "t2", Data: js(`{}`)},
			store.ManagedSessionEvent{ID: "sevt_3", Type: "session.updated", Data: js(`{}`)})
		require.ErrorIs(t, err, store.ErrNotFound, "another tenant's session: no update, no event")
		evs, err = m.ListManagedSessionEvents(ctx, "t1", a.ID)
		require.NoError(t, err)
		require.Len(t, evs, 2)
		require.Equal(t, []string{"sevt_1", "sevt_2"}, []string{evs[0].ID, evs[1].ID})
		require.Equal(t, `{"id":"sevt_1"}`, string(evs[0].Data))
		require.Equal(t, ev1, evs[0])
		evs, err = m.ListManagedSessionEvents(ctx, "t2", a.ID)
		require.NoError(t, err)
		require.Empty(t, evs, "another tenant's")

		require.ErrorIs(t, m.DeleteManagedSession(ctx, "t2", a.ID), store.ErrNotFound)
		require.NoError(t, m.DeleteManagedSession(ctx, "t1", a.ID))
		evs, err = m.ListManagedSessionEvents(ctx, "t1", a.ID)
		require.NoError(t, err)
		require.Empty(t, evs, "the events go with their session")
		_, err = m.GetManagedSession(ctx, "t1", a.ID)
		require.ErrorIs(t, err, store.ErrNotFound)
		_, err = s.GetConversation(ctx, "t1", a.ConversationID)
		require.True(t, errors.Is(err, store.ErrNotFound), "the conversation goes with its session: %v", err)
	})
}
