package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/cachekeeper/cachekeeper/config"
)

const userCache = "caches:\n  user:\n    key: user:{id}\n    ttl: 1h\n    by_ids: SELECT id FROM users WHERE id IN (?)\n"

func TestChangesAcceptsOneMappingOrAList(t *testing.T) {
	t.Parallel()
	one, err := config.Load(write(t, userCache+"    changes: {table: users, id: id}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := one.Caches["user"].Changes
	if len(got) != 1 || got[0].Table != "users" || got[0].ID != "id" || got[0].ActionOrDefault() != config.ChangeInvalidate {
		t.Fatalf("single mapping decoded as %+v", got)
	}
	many, err := config.Load(write(t, userCache+`    changes:
      - {table: app.users, id: id, action: rewarm}
      - {table: memberships, tags: ["org:{org_id}"]}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	got = many.Caches["user"].Changes
	if len(got) != 2 || got[0].ActionOrDefault() != config.ChangeRewarm || got[1].Tags[0] != "org:{org_id}" {
		t.Fatalf("list decoded as %+v", got)
	}
	if s, tb := got[0].SplitTable(); s != "app" || tb != "users" {
		t.Fatalf("SplitTable = %q, %q", s, tb)
	}
	if s, tb := got[1].SplitTable(); s != "" || tb != "memberships" {
		t.Fatalf("SplitTable = %q, %q", s, tb)
	}
	if !many.HasChanges() {
		t.Fatal("HasChanges = false")
	}
}

func TestChangesValidation(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"    changes: {id: id}\n":                                                 "table: is required",
		"    changes: {table: a.b.c, id: id}\n":                                   "schema.table",
		"    changes: {table: \"users; drop\", id: id}\n":                         "letters, digits",
		"    changes: {table: users}\n":                                           "give id",
		"    changes: {table: users, id: \"i d\"}\n":                              "must be a column name",
		"    changes: {table: users, id: id, action: purge}\n":                    "must be invalidate or rewarm",
		"    changes: {table: users, tags: [\"org:{org_id}\"], action: rewarm}\n": "rewarm needs id",
		"    changes: {table: users, tags: [\"org\"]}\n":                          "no placeholder",
		"    changes: [{table: users, id: id}, {table: users, id: x}]\n":          "listed twice",
	}
	for body, want := range cases {
		_, err := config.Load(write(t, userCache+body), nil)
		if err == nil || !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("changes %q: err = %v, want ErrInvalid mentioning %q", body, err, want)
		}
	}
}

func TestCheckChangeStreamRefusesSQLite(t *testing.T) {
	t.Parallel()
	c := config.Default()
	c.Caches = config.DemoCaches()
	c.Database.URL = "sqlite://x.db"
	if err := c.CheckChangeStream(); err != nil {
		t.Fatalf("no changes blocks: %v", err)
	}
	u := c.Caches["user"]
	u.Changes = config.ChangeSources{{Table: "users", ID: "id"}}
	c.Caches["user"] = u
	if err := c.CheckChangeStream(); !errors.Is(err, config.ErrNoChangeStream) {
		t.Fatalf("sqlite with changes: %v", err)
	}
	c.Database.URL = "postgres://x/y"
	if err := c.CheckChangeStream(); err != nil {
		t.Fatalf("postgres: %v", err)
	}
}
