package inbox

// SetCrashHooks installs the hooks crash tests use: before is called just
// before the enqueue, after just before the entry's final removal.
func SetCrashHooks(c *Config, before, after func()) {
	c.beforeEnqueue, c.beforeRemove = before, after
}

// EntriesIn counts the entries the processing-list elements hold (a batch
// envelope holds several).
func EntriesIn(elements []string) int {
	n := 0
	for _, s := range elements {
		if bt, ok := parseBatch(s); ok {
			n += len(bt.Entries)
		} else {
			n++
		}
	}
	return n
}
