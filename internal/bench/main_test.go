package bench_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/cachekeeper/cachekeeper/internal/bench"
)

// appLoadArg, followed by a Redis URL as the last arguments, makes the test
// binary the application loop's process (bench.AppLoad), as
// `cachekeeper bench app-load` is for the real benchmark.
const appLoadArg = "ck-app-load"

func TestMain(m *testing.M) {
	if n := len(os.Args); n >= 3 && os.Args[n-2] == appLoadArg {
		os.Exit(runAppLoad(os.Args[n-1]))
	}
	goleak.VerifyTestMain(m,
		// go-redis pools and asynq close asynchronously; these exit shortly after Close.
		goleak.IgnoreTopFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).reaper"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		// vitess's MySQL client (bench changes) logs through glog, whose init starts this.
		goleak.IgnoreTopFunction("github.com/golang/glog.(*fileSink).flushDaemon"),
	)
}

func runAppLoad(url string) int {
	opt, err := redis.ParseURL(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	if err := bench.AppLoad(context.Background(), rdb, 500, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
