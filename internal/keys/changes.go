package keys

// Keys of the database change stream reader (`cachekeeper changes`), one set
// per stream name (the PostgreSQL slot name, or the MySQL stream's name).

// ChangesLease is held by the one replica that reads the stream.
func (k Keys) ChangesLease(stream string) string { return k.prefix + "changes:" + stream + ":lease" }

// ChangesPosition is the last binlog position (MySQL) whose changes are all
// enqueued; the stream resumes after it.
func (k Keys) ChangesPosition(stream string) string {
	return k.prefix + "changes:" + stream + ":position"
}

// ChangesStatus is a hash the holder refreshes: position, lag, rate.
func (k Keys) ChangesStatus(stream string) string { return k.prefix + "changes:" + stream + ":status" }

// ChangesStreams is the set of stream names that ever held their lease, so
// that the worker's /caches page finds each stream whatever its --stream.
func (k Keys) ChangesStreams() string { return k.prefix + "changes:streams" }
