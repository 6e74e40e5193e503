package keys_test

import (
	"encoding/json"
	"testing"

	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

// The Python package builds the same key names and applies the same
// internal-key rule and cache-name check as this package.
func TestPythonKeysMatchGo(t *testing.T) {
	t.Parallel()
	k := keys.Default()
	inbox := k.Inbox()
	tag := keys.SlotTag(keys.Slot("user:42"))
	want := map[string]any{
		"fence":            k.Fence("user:42"),
		"fence_tagged":     k.Fence("{org:7}:user:42"),
		"cache_fence":      k.CacheFence("user", ""),
		"cache_fence_slot": k.CacheFence("user", tag),
		"slot_tag":         tag,
		"slot_tag_0":       keys.SlotTag(0),
		"slot_tag_16383":   keys.SlotTag(16383),
		"inbox":            inbox,
		"events":           k.EventsChannel(),
		"dead":             keys.DeadLetter(inbox),
		"dead_own":         keys.DeadLetter("jobs:inbox"),
		"same_slot_braces": keys.SameSlot("a{}b"),
	}
	rule := keys.NewRule("app:", "jobs:inbox")
	inputs := []string{"user:1", "app:x", "cachekeeper:inbox", "{cachekeeper:inbox}:dead", "asynq:{default}:pending", "{asynq:x",
		"jobs:inbox", "{jobs:inbox}:processing", "jobs:inboxes", "user:*", "asynq:*", "a*", "app\\:x", "{app:*"}
	var keyRefused, patternRefused []bool
	for _, in := range inputs {
		keyRefused = append(keyRefused, rule.CheckKey(in) != nil)
		patternRefused = append(patternRefused, rule.CheckPattern(in) != nil)
	}
	want["key_refused"] = keyRefused
	want["pattern_refused"] = patternRefused
	names := []string{"user", "", " ", "us er", "u{1}", "u*", "user_profile"}
	var nameRefused []bool
	for _, n := range names {
		nameRefused = append(nameRefused, keys.CheckCacheName(n) != nil)
	}
	want["name_refused"] = nameRefused
	in, _ := json.Marshal(map[string]any{"inputs": inputs, "names": names, "tag_of": keys.Slot("user:42")})
	out := testenv.RunPython(t, `
import json, sys
from cachekeeper import _keys as k
a = json.load(sys.stdin)
p = k.DEFAULT_PREFIX
rule = k.Rule("app:", ["jobs:inbox"])
tag = k.slot_tag(a["tag_of"])
print(json.dumps({
    "fence": k.fence(p, "user:42"), "fence_tagged": k.fence(p, "{org:7}:user:42"),
    "cache_fence": k.cache_fence(p, "user"), "cache_fence_slot": k.cache_fence(p, "user", tag),
    "slot_tag": tag, "slot_tag_0": k.slot_tag(0), "slot_tag_16383": k.slot_tag(16383),
    "inbox": k.inbox(p), "events": k.events_channel(p), "dead": k.dead_letter(k.inbox(p)), "dead_own": k.dead_letter("jobs:inbox"),
    "same_slot_braces": k.same_slot("a{}b"),
    "key_refused": [rule.check_key(x) is not None for x in a["inputs"]],
    "pattern_refused": [rule.check_pattern(x) is not None for x in a["inputs"]],
    "name_refused": [k.check_cache_name(n) is not None for n in a["names"]],
}))
`, in)
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	wantJSON, _ := json.Marshal(want)
	var wantAny map[string]any
	_ = json.Unmarshal(wantJSON, &wantAny)
	for name, w := range wantAny {
		g, _ := json.Marshal(got[name])
		ws, _ := json.Marshal(w)
		if string(g) != string(ws) {
			t.Errorf("%s: python %s, Go %s", name, g, ws)
		}
	}
}
