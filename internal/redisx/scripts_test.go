package redisx_test

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cachekeeper/cachekeeper/internal/redisx"
	"github.com/cachekeeper/cachekeeper/internal/scan/scantest"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/redis/go-redis/v9"
)

// Every file of lua/ is a script variable, and opens with its contract.
func TestEveryScriptIsLoadedAndStatesItsContract(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("lua/*.lua")
	if err != nil || len(files) == 0 {
		t.Fatalf("lua/*.lua: %v (%d files)", err, len(files))
	}
	byName := map[string]*redisx.Script{}
	for _, s := range redisx.All() {
		byName[s.Name()] = s
	}
	for _, f := range files {
		name := filepath.Base(f)
		if byName[name] == nil {
			t.Errorf("%s is not loaded by any variable of scripts.go", name)
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var header strings.Builder
		for _, line := range strings.Split(string(data), "\n") {
			if !strings.HasPrefix(line, "--") {
				break
			}
			header.WriteString(line + "\n")
		}
		h := header.String()
		if !strings.HasPrefix(h, "-- "+name+": ") {
			t.Errorf("%s: the header must start with %q", name, "-- "+name+": ")
		}
		for _, want := range []string{"KEYS", "ARGV", "Returns"} {
			if !strings.Contains(h, want) {
				t.Errorf("%s: the header does not say %s", name, want)
			}
		}
	}
	if len(byName) != len(files) {
		t.Errorf("%d scripts loaded, %d files in lua/", len(byName), len(files))
	}
}

// No Lua text outside this package: no redis.NewScript, no EVAL of a
// literal, anywhere else in the module, Go or Python.
func TestNoScriptOutsideRedisx(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "..")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "redisx", "node_modules":
				return filepath.SkipDir
			}
			return nil
		}
		bads := []string{"redis.NewScript(", "redis.call(", ".Eval(ctx, \""}
		switch {
		case strings.HasSuffix(path, ".go"):
		case strings.HasSuffix(path, ".py"):
			// The Python package calls the function library by name.
			bads = []string{"redis.call(", "register_script(", "script_load(", ".eval(", ".evalsha(", "function_load("}
		default:
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		src := string(data)
		for _, bad := range bads {
			if strings.Contains(src, bad) {
				t.Errorf("%s contains %q: Lua belongs in internal/redisx/lua", path, bad)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Every script compiles on a real Redis.
func TestScriptsLoad(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	for _, s := range redisx.All() {
		if err := s.Load(context.Background(), r.Client).Err(); err != nil {
			t.Errorf("%s: %v", s.Name(), err)
		}
	}
}

func TestEvalAllReloadsAfterScriptFlush(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	r.Client.Set(ctx, "lease", "me", 0)
	r.Client.Set(ctx, "other", "you", 0)
	if err := r.Client.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	calls := []redisx.Call{
		{Script: redisx.WarmDrainRelease, Keys: []string{"lease"}, Args: []any{"me"}},
		{Script: redisx.WarmDrainRelease, Keys: []string{"other"}, Args: []any{"me"}},
		{Script: redisx.SRemReport, Keys: []string{"lease"}, Args: []any{"x"}}, // a missing set: nothing removed
	}
	cmds, err := redisx.EvalAll(ctx, r.Client, calls)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := cmds[0].Int(); err != nil || n != 1 {
		t.Fatalf("release own lease = %d, %v; want 1", n, err)
	}
	if n, err := cmds[1].Int(); err != nil || n != 0 {
		t.Fatalf("release another's lease = %d, %v; want 0", n, err)
	}
	if v, err := cmds[2].Int64Slice(); err != nil || len(v) != 2 {
		t.Fatalf("srem report = %v, %v", v, err)
	}
	if r.Client.Exists(ctx, "lease").Val() != 0 || r.Client.Get(ctx, "other").Val() != "you" {
		t.Fatal("the calls did not run exactly once each")
	}
}

func TestEvalAllLeavesServerErrorsWithTheirCall(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	r.Client.Set(ctx, "str", "v", 0)
	cmds, err := redisx.EvalAll(ctx, r.Client, []redisx.Call{
		{Script: redisx.SRemReport, Keys: []string{"str"}, Args: []any{"x"}},
		{Script: redisx.SRemReport, Keys: []string{"set"}, Args: []any{"x"}},
	})
	if err != nil {
		t.Fatalf("a script error must stay with its call, got %v", err)
	}
	if cmds[0].Err() == nil || !strings.Contains(cmds[0].Err().Error(), "WRONGTYPE") {
		t.Fatalf("call on a string: err = %v, want WRONGTYPE", cmds[0].Err())
	}
	if cmds[1].Err() != nil {
		t.Fatalf("second call: %v", cmds[1].Err())
	}
}

func TestPipelinedReloadsAndResendsEverything(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	if err := r.Client.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	var incr *redis.IntCmd
	cmds, err := redisx.Pipelined(ctx, r.Client, redisx.FenceInvalidate, 2,
		func(p redis.Pipeliner) { incr = p.Incr(ctx, "before") },
		func(p redis.Pipeliner, i int) *redis.Cmd {
			k := []string{"k0", "k1"}[i]
			return redisx.FenceInvalidate.EvalSha(ctx, p, []string{k, k + ":fence"}, 60000)
		})
	if err != nil {
		t.Fatal(err)
	}
	if len(cmds) != 2 || cmds[0].Err() != nil || cmds[1].Err() != nil {
		t.Fatalf("cmds = %v", cmds)
	}
	// Sent twice (NOSCRIPT, then again): before's command ran twice too,
	// which is why Pipelined asks for idempotent commands there.
	if incr.Val() != 2 || r.Client.Exists(ctx, "k0:fence", "k1:fence").Val() != 2 {
		t.Fatalf("before = %d, fences = %d", incr.Val(), r.Client.Exists(ctx, "k0:fence", "k1:fence").Val())
	}
}

func TestRunPerSlotSumsOverSlotsOnCluster(t *testing.T) {
	t.Parallel()
	cc := scantest.NewCluster(t)
	ctx := context.Background()
	var list []string
	for i := 0; i < 50; i++ {
		k := "rl:" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		cc.ZAdd(ctx, k, redis.Z{Score: 1, Member: "old"})
		list = append(list, k)
	}
	// window 1s in µs, seconds as unit, TTL 1000 ms, no memory sample.
	sum, err := redisx.RunPerSlot(ctx, cc, redisx.RateLimitPrune, list, 1_000_000, 1_000_000, 1000, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if sum[0] != 50 || sum[1] != 50 {
		t.Fatalf("removed %d, deleted %d; want 50 and 50", sum[0], sum[1])
	}
}
