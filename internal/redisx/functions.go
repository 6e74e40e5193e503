package redisx

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// The function library of the read protocol (docs/read-protocol.md): the
// scripts an application in any language calls by name with FCALL. Each
// function's body is the script file of lua/ named beside it, wrapped as a
// callback whose parameters are KEYS and ARGV, so one file is both the
// function and the script the EVALSHA fallback sends.
const (
	// LibraryName is the library's name; the protocol version is in it and
	// in every function's name (ck1_...).
	LibraryName = "cachekeeper_v1"
	// LibraryRevision is what ck1_version returns beside protocol 1
	// (lib_version.lua); raise both with every change of a function.
	LibraryRevision = 1
)

// Function is one function of the library.
type Function struct {
	// Name is the name FCALL takes.
	Name string
	// Script is the body, also sent by EVALSHA when the server has no
	// functions.
	Script *Script
	// NoWrites marks a read-only function (callable with FCALL_RO).
	NoWrites bool
}

// The library's functions.
var (
	FuncVersion   = &Function{Name: "ck1_version", Script: load("lib_version.lua"), NoWrites: true}
	FuncGet       = &Function{Name: "ck1_get", Script: load("lease_get.lua")}
	FuncFill      = &Function{Name: "ck1_fill", Script: load("lease_fill.lua")}
	FuncRelease   = &Function{Name: "ck1_release", Script: load("lease_release.lua")}
	FuncTouch     = &Function{Name: "ck1_touch", Script: load("hot_touch.lua")}
	FuncRateLimit = &Function{Name: "ck1_ratelimit_allow", Script: RateLimitAllow}
)

// Functions lists the library's functions in the order they are registered.
func Functions() []*Function {
	return []*Function{FuncVersion, FuncGet, FuncFill, FuncRelease, FuncTouch, FuncRateLimit}
}

// LibraryText is the library's source, as FUNCTION LOAD takes it.
func LibraryText() string {
	var b strings.Builder
	b.WriteString("#!lua name=" + LibraryName + "\n")
	for _, f := range Functions() {
		b.WriteString("\n-- " + f.Name + ": " + f.Script.name + "\n")
		b.WriteString("redis.register_function{function_name = '" + f.Name + "', callback = function(KEYS, ARGV)\n")
		b.WriteString(strings.TrimRight(f.Script.src, "\n"))
		b.WriteString("\nend")
		if f.NoWrites {
			b.WriteString(", flags = {'no-writes'}")
		}
		b.WriteString("}\n")
	}
	return b.String()
}

// ErrNoFunctions is returned by LoadLibrary when the server has no Redis
// Functions (before Redis 7, or an in-memory stand-in such as miniredis).
var ErrNoFunctions = errors.New("the Redis server has no FUNCTION command (Redis 7 or later is needed to call cachekeeper by name)")

// LoadResult says what LoadLibrary did on one master.
type LoadResult struct {
	Addr string
	// Action is "loaded" (missing before), "replaced" (an older revision),
	// "kept" (the same or a newer revision was loaded).
	Action string
	// Revision is the revision loaded before (0: none).
	Revision int64
}

// LoadLibrary loads the library on the server, or on every master of a
// cluster (replicas receive it by replication), unless the same or a newer
// revision is loaded there already.
func LoadLibrary(ctx context.Context, rdb redis.UniversalClient) ([]LoadResult, error) {
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		var mu sync.Mutex
		var out []LoadResult
		err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			r, err := loadOn(ctx, c, c.Options().Addr)
			if err != nil {
				return err
			}
			mu.Lock()
			out = append(out, r)
			mu.Unlock()
			return nil
		})
		return out, err
	}
	r, err := loadOn(ctx, rdb, "")
	if err != nil {
		return nil, err
	}
	return []LoadResult{r}, nil
}

func loadOn(ctx context.Context, c redis.Cmdable, addr string) (LoadResult, error) {
	res := LoadResult{Addr: addr}
	v, err := c.FCallRO(ctx, FuncVersion.Name, nil).Int64Slice()
	switch {
	case err == nil && len(v) == 2:
		res.Revision = v[1]
		if v[1] >= LibraryRevision {
			res.Action = "kept"
			return res, nil
		}
		res.Action = "replaced"
	case err != nil && IsUnknownCommand(err):
		return res, ErrNoFunctions
	case err != nil && !IsFunctionNotFound(err):
		return res, fmt.Errorf("read the loaded revision of %s: %w", LibraryName, err)
	default:
		res.Action = "loaded"
	}
	if err := c.FunctionLoadReplace(ctx, LibraryText()).Err(); err != nil {
		if IsUnknownCommand(err) {
			return res, ErrNoFunctions
		}
		return res, fmt.Errorf("load function library %s: %w", LibraryName, err)
	}
	return res, nil
}

// IsFunctionNotFound reports the error of FCALL of a function the server
// does not hold.
func IsFunctionNotFound(err error) bool {
	return IsServerError(err) && strings.Contains(err.Error(), "Function not found")
}

// IsUnknownCommand reports an unknown command error (FCALL or FUNCTION on a
// server without functions).
func IsUnknownCommand(err error) bool {
	return IsServerError(err) && strings.Contains(strings.ToLower(err.Error()), "unknown command")
}

// Caller calls the library's functions by name, loading the library when
// the server does not hold it, and falls back to EVALSHA of the same bodies
// on a server without functions. It is safe for concurrent use.
type Caller struct {
	rdb redis.UniversalClient
	// scripts is set once the server said it has no functions.
	scripts atomic.Bool
	loadMu  sync.Mutex
}

// NewCaller returns a Caller over rdb.
func NewCaller(rdb redis.UniversalClient) *Caller { return &Caller{rdb: rdb} }

// UsesScripts reports whether calls go by EVALSHA (no functions on the server).
func (c *Caller) UsesScripts() bool { return c.scripts.Load() }

// Call runs fn with keys and args.
func (c *Caller) Call(ctx context.Context, fn *Function, keys []string, args ...any) *redis.Cmd {
	if c.scripts.Load() {
		return fn.Script.Run(ctx, c.rdb, keys, args...)
	}
	cmd := c.rdb.FCall(ctx, fn.Name, keys, args...)
	err := cmd.Err()
	switch {
	case err == nil || !IsServerError(err):
		return cmd
	case IsUnknownCommand(err):
		c.scripts.Store(true)
		return fn.Script.Run(ctx, c.rdb, keys, args...)
	case IsFunctionNotFound(err):
		if lerr := c.load(ctx); lerr != nil {
			if errors.Is(lerr, ErrNoFunctions) {
				c.scripts.Store(true)
				return fn.Script.Run(ctx, c.rdb, keys, args...)
			}
			cmd.SetErr(lerr)
			return cmd
		}
		return c.rdb.FCall(ctx, fn.Name, keys, args...)
	}
	return cmd
}

func (c *Caller) load(ctx context.Context) error {
	c.loadMu.Lock()
	defer c.loadMu.Unlock()
	_, err := LoadLibrary(ctx, c.rdb)
	return err
}
