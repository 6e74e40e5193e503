package inbox

// SetCrashHooks installs the hooks crash tests use: before is called just
// before the enqueue, after just before the entry's final removal.
func SetCrashHooks(c *Config, before, after func()) {
	c.beforeEnqueue, c.beforeRemove = before, after
}
