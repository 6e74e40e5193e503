// Package redisx holds cachekeeper's Redis machinery shared by every room:
// every Lua script (embedded from lua/*.lua, each file opening with its
// KEYS/ARGV contract), the one runner that sends them (EVALSHA, NOSCRIPT
// fallback, one pipeline of calls grouped by hash slot on a cluster) and the
// one hash-slot grouper.
//
// No Lua text lives outside lua/; a package that needs a script uses the
// variable here and sends it through Run (one call), EvalAll (a pipeline of
// calls, NOSCRIPT reloaded and only those calls re-sent), RunPerSlot (one
// call per hash slot, integer replies summed) or Pipelined (a pipeline of
// one script's calls after other commands, re-sent whole on NOSCRIPT).
package redisx
