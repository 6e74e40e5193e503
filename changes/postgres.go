package changes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// pgSource follows a PostgreSQL replication slot with the pgoutput plugin.
type pgSource struct {
	cfg     Config
	metrics *Metrics
	logger  *slog.Logger
}

func newPostgres(cfg Config, m *Metrics, logger *slog.Logger) *pgSource {
	return &pgSource{cfg: cfg, metrics: m, logger: logger}
}

func (s *pgSource) close() {}

func (s *pgSource) connect(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, s.cfg.Database.URL)
	if err != nil {
		return nil, fmt.Errorf("changes: connect to PostgreSQL: %w", err)
	}
	return conn, nil
}

// replConnect opens a replication connection (replication=database).
func (s *pgSource) replConnect(ctx context.Context) (*pgconn.PgConn, error) {
	pc, err := pgconn.ParseConfig(s.cfg.Database.URL)
	if err != nil {
		return nil, fmt.Errorf("changes: database url: %w", err)
	}
	pc.RuntimeParams["replication"] = "database"
	conn, err := pgconn.ConnectConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("changes: open a replication connection: %w", err)
	}
	return conn, nil
}

// prepare refuses a server that cannot stream, resolves the tables, warns
// where the replica identity cannot name old ids, and creates the
// publication and the slot when missing.
func (s *pgSource) prepare(ctx context.Context) (map[string]string, error) {
	conn, err := s.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var wal string
	if err := conn.QueryRow(ctx, "SHOW wal_level").Scan(&wal); err != nil {
		return nil, fmt.Errorf("changes: read wal_level: %w", err)
	}
	if wal != "logical" {
		return nil, setupErrorf("PostgreSQL wal_level is %q but logical replication needs wal_level = logical: run ALTER SYSTEM SET wal_level = logical (or set it in postgresql.conf) and restart PostgreSQL", wal)
	}
	var role string
	var canReplicate bool
	if err := conn.QueryRow(ctx, "SELECT rolname, rolsuper OR rolreplication FROM pg_roles WHERE rolname = current_user").Scan(&role, &canReplicate); err != nil {
		return nil, fmt.Errorf("changes: read the role's attributes: %w", err)
	}
	if !canReplicate {
		return nil, setupErrorf("PostgreSQL role %q lacks the REPLICATION attribute: run ALTER ROLE %s REPLICATION as a superuser (and allow it a replication connection in pg_hba.conf)", role, pgx.Identifier{role}.Sanitize())
	}
	resolved := map[string]string{}
	var qualified []pgx.Identifier
	for _, t := range tables(s.cfg.Caches) {
		var ns, rel, ident string
		err := conn.QueryRow(ctx, `SELECT n.nspname, c.relname, c.relreplident::text FROM pg_class c
			JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)`, t).Scan(&ns, &rel, &ident)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, setupErrorf("table %q of a changes: block does not exist in the database (check its name, schema and the search_path)", t)
		}
		if err != nil {
			return nil, fmt.Errorf("changes: look up table %q: %w", t, err)
		}
		resolved[t] = ns + "." + rel
		qualified = append(qualified, pgx.Identifier{ns, rel})
		if err := s.checkIdentity(ctx, conn, t, ns+"."+rel, ident); err != nil {
			return nil, err
		}
	}
	if err := s.ensurePublication(ctx, conn, qualified); err != nil {
		return nil, err
	}
	if err := s.ensureSlot(ctx, conn); err != nil {
		return nil, err
	}
	s.checkRetained(ctx, conn, nil)
	return resolved, nil
}

// checkIdentity warns about columns the slot will not send for a DELETE or
// for the old row of an UPDATE: those outside the replica identity.
func (s *pgSource) checkIdentity(ctx context.Context, conn *pgx.Conn, configured, table, ident string) error {
	inIdentity := map[string]bool{}
	switch ident {
	case "f":
		return nil
	case "d", "i":
		rows, err := conn.Query(ctx, `SELECT a.attname FROM pg_index i
			JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
			WHERE i.indrelid = to_regclass($1) AND CASE WHEN $2 = 'd' THEN i.indisprimary ELSE i.indisreplident END`, configured, ident)
		if err != nil {
			return fmt.Errorf("changes: read the replica identity of %s: %w", table, err)
		}
		cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("changes: read the replica identity of %s: %w", table, err)
		}
		for _, c := range cols {
			inIdentity[c] = true
		}
	}
	for _, col := range columnsOf(s.cfg.Caches, configured) {
		if !inIdentity[col] {
			s.logger.Warn("changes: the replica identity of the table does not include the column, so a DELETE (or an UPDATE that changes it) cannot name the old key; run ALTER TABLE ... REPLICA IDENTITY FULL",
				slog.String("table", table), slog.String("column", col),
				slog.String("fix", "ALTER TABLE "+table+" REPLICA IDENTITY FULL"))
		}
	}
	return nil
}

// columnsOf lists the id and tag columns the changes: blocks read from table.
func columnsOf(caches map[string]config.CacheSpec, table string) []string {
	seen := map[string]bool{}
	var out []string
	add := func(c string) {
		if c != "" && !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	for _, spec := range caches {
		for _, c := range spec.Changes {
			if c.Table != table {
				continue
			}
			add(c.ID)
			for _, t := range c.Tags {
				if tpl, err := keys.ParseTemplate(t); err == nil {
					for _, p := range tpl.Placeholders() {
						add(p)
					}
				}
			}
		}
	}
	return out
}

func (s *pgSource) ensurePublication(ctx context.Context, conn *pgx.Conn, tables []pgx.Identifier) error {
	pub := pgx.Identifier{s.cfg.Publication}.Sanitize()
	var all bool
	err := conn.QueryRow(ctx, "SELECT puballtables FROM pg_publication WHERE pubname = $1", s.cfg.Publication).Scan(&all)
	if errors.Is(err, pgx.ErrNoRows) {
		names := make([]string, len(tables))
		for i, t := range tables {
			names[i] = t.Sanitize()
		}
		if _, err := conn.Exec(ctx, "CREATE PUBLICATION "+pub+" FOR TABLE "+strings.Join(names, ", ")); err != nil {
			return fmt.Errorf("changes: create publication %s: %w", pub, err)
		}
		s.logger.Info("changes: created the publication", slog.String("publication", s.cfg.Publication), slog.Int("tables", len(tables)))
		return nil
	}
	if err != nil {
		return fmt.Errorf("changes: read publication %s: %w", pub, err)
	}
	if all {
		return nil
	}
	rows, err := conn.Query(ctx, "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1", s.cfg.Publication)
	if err != nil {
		return fmt.Errorf("changes: read publication %s: %w", pub, err)
	}
	have := map[string]bool{}
	for rows.Next() {
		var ns, rel string
		if err := rows.Scan(&ns, &rel); err != nil {
			rows.Close()
			return err
		}
		have[ns+"."+rel] = true
	}
	rows.Close()
	for _, t := range tables {
		if have[t[0]+"."+t[1]] {
			continue
		}
		if _, err := conn.Exec(ctx, "ALTER PUBLICATION "+pub+" ADD TABLE "+t.Sanitize()); err != nil {
			return fmt.Errorf("changes: add %s to publication %s: %w", t.Sanitize(), pub, err)
		}
		s.logger.Info("changes: added the table to the publication", slog.String("publication", s.cfg.Publication), slog.String("table", t[0]+"."+t[1]))
	}
	return nil
}

func (s *pgSource) ensureSlot(ctx context.Context, conn *pgx.Conn) error {
	var plugin, db, current string
	err := conn.QueryRow(ctx, `SELECT coalesce(plugin, ''), coalesce(database, ''), current_database() FROM pg_replication_slots WHERE slot_name = $1`, s.cfg.Name).Scan(&plugin, &db, &current)
	if err == nil {
		if plugin != "pgoutput" || db != current {
			return setupErrorf("replication slot %q exists but is not a pgoutput slot of database %q (plugin %q, database %q): pick another --slot or drop it with SELECT pg_drop_replication_slot('%s')", s.cfg.Name, current, plugin, db, s.cfg.Name)
		}
		return nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("changes: read replication slot %q: %w", s.cfg.Name, err)
	}
	rc, err := s.replConnect(ctx)
	if err != nil {
		return err
	}
	defer rc.Close(context.WithoutCancel(ctx))
	_, err = pglogrepl.CreateReplicationSlot(ctx, rc, s.cfg.Name, "pgoutput", pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42710" {
		return nil // created meanwhile
	}
	if err != nil {
		return fmt.Errorf("changes: create replication slot %q: %w", s.cfg.Name, err)
	}
	s.logger.Info("changes: created the replication slot; changes committed from now on are followed", slog.String("slot", s.cfg.Name))
	return nil
}

// checkRetained measures the WAL the slot keeps and warns past the threshold.
func (s *pgSource) checkRetained(ctx context.Context, conn *pgx.Conn, p *progress) {
	var retained int64
	err := conn.QueryRow(ctx, `SELECT coalesce(pg_current_wal_lsn() - restart_lsn, 0)::bigint FROM pg_replication_slots WHERE slot_name = $1`, s.cfg.Name).Scan(&retained)
	if err != nil {
		return
	}
	s.metrics.RetainedBytes.Set(float64(retained))
	if p != nil {
		p.setRetained(retained)
	}
	if retained > s.cfg.RetainedWALWarn {
		s.logger.Warn("changes: the replication slot retains WAL past the threshold; the primary keeps it until the stream catches up (a slot nobody reads fills the disk: drop it with SELECT pg_drop_replication_slot(...))",
			slog.String("slot", s.cfg.Name), slog.Int64("retained_bytes", retained), slog.Int64("threshold_bytes", s.cfg.RetainedWALWarn))
	}
}

// stream reads the slot, applying each transaction and confirming its end
// only after its jobs are enqueued.
func (s *pgSource) stream(ctx context.Context, a *applier, p *progress) error {
	conn, err := s.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var confirmed pglogrepl.LSN
	if err := conn.QueryRow(ctx, "SELECT coalesce(confirmed_flush_lsn, '0/0')::text FROM pg_replication_slots WHERE slot_name = $1", s.cfg.Name).Scan(&confirmed); err != nil {
		return fmt.Errorf("changes: read slot position: %w", err)
	}
	if err := s.endDeadWalsender(ctx, conn); err != nil {
		return err
	}
	rc, err := s.replConnect(ctx)
	if err != nil {
		return err
	}
	defer rc.Close(context.WithoutCancel(ctx))
	err = pglogrepl.StartReplication(ctx, rc, s.cfg.Name, 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names '" + s.cfg.Publication + "'"},
	})
	if err != nil {
		return fmt.Errorf("changes: start replication on slot %q: %w", s.cfg.Name, err)
	}
	s.logger.Info("changes: streaming", slog.String("slot", s.cfg.Name), slog.String("from", confirmed.String()))
	r := &pgReader{src: s, rc: rc, a: a, p: p, confirmed: confirmed, relations: map[uint32]*pglogrepl.RelationMessage{}}
	return r.run(ctx, conn)
}

// endDeadWalsender ends the walsender still attached to the slot. It is
// called holding the stream's lease, so that walsender is a dead holder's:
// a live holder stops streaming once it cannot renew the lease, well before
// the lease expires. When the dead holder's host is lost (no FIN reaches
// PostgreSQL) its walsender would otherwise keep the slot until
// wal_sender_timeout (60s by default), and the new holder could not start.
func (s *pgSource) endDeadWalsender(ctx context.Context, conn *pgx.Conn) error {
	var pid *int32
	if err := conn.QueryRow(ctx, "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1", s.cfg.Name).Scan(&pid); err != nil {
		return fmt.Errorf("changes: read the slot's walsender: %w", err)
	}
	if pid == nil {
		return nil
	}
	var ended bool
	if err := conn.QueryRow(ctx, "SELECT pg_terminate_backend($1)", *pid).Scan(&ended); err != nil {
		return fmt.Errorf("changes: end the walsender (pid %d) a dead holder left on slot %q: %w (grant the role pg_signal_backend, or wait for wal_sender_timeout)", *pid, s.cfg.Name, err)
	}
	s.logger.Warn("changes: ended the walsender a dead holder left on the slot", slog.String("slot", s.cfg.Name), slog.Int("pid", int(*pid)), slog.Bool("ended", ended))
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		var active bool
		if err := conn.QueryRow(ctx, "SELECT active FROM pg_replication_slots WHERE slot_name = $1", s.cfg.Name).Scan(&active); err != nil || !active {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// pgReader is the state of one streaming session.
type pgReader struct {
	src       *pgSource
	rc        *pgconn.PgConn
	a         *applier
	p         *progress
	confirmed pglogrepl.LSN // every change before it is enqueued
	serverEnd pglogrepl.LSN
	inTx      bool
	relations map[uint32]*pglogrepl.RelationMessage
	lagSec    float64
	lastSent  time.Time
	// conn is the SQL connection of the visibility proofs; snap the last
	// snapshot it read (proof for every transaction it shows finished).
	conn     *pgx.Conn
	snap     pgSnapshot
	haveSnap bool
}

func (r *pgReader) run(ctx context.Context, conn *pgx.Conn) error {
	r.conn = conn
	interval := r.src.cfg.StatusInterval
	next := time.Now()
	nextRetained := time.Now().Add(30 * time.Second)
	for {
		if time.Now().After(next) {
			if err := r.sendStatus(ctx); err != nil {
				return err
			}
			next = time.Now().Add(interval)
		}
		if time.Now().After(nextRetained) {
			r.src.checkRetained(ctx, conn, r.p)
			nextRetained = time.Now().Add(30 * time.Second)
		}
		rctx, cancel := context.WithDeadline(ctx, next)
		raw, err := r.rc.ReceiveMessage(rctx)
		cancel()
		if ctx.Err() != nil {
			r.finalStatus()
			return nil
		}
		if err != nil {
			if pgconn.Timeout(err) {
				continue
			}
			return fmt.Errorf("changes: receive from slot %q: %w", r.src.cfg.Name, err)
		}
		switch m := raw.(type) {
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("changes: slot %q: %s (SQLSTATE %s)", r.src.cfg.Name, m.Message, m.Code)
		case *pgproto3.CopyData:
			reply, err := r.handle(ctx, m.Data)
			if err != nil {
				return err
			}
			if reply {
				next = time.Time{}
			}
		}
	}
}

// handle processes one CopyData message; reply asks for a status update now.
func (r *pgReader) handle(ctx context.Context, data []byte) (reply bool, err error) {
	if len(data) == 0 {
		return false, nil
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		k, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return false, fmt.Errorf("changes: keepalive: %w", err)
		}
		r.serverEnd = k.ServerWALEnd
		// Between transactions everything the server sent is applied, so
		// its WAL end may be confirmed (the slot then holds no WAL for
		// changes of tables we do not follow).
		if !r.inTx && r.serverEnd > r.confirmed {
			r.confirmed = r.serverEnd
			r.lagSec = 0
		}
		r.p.set(r.confirmed.String(), lagBytes(r.serverEnd, r.confirmed), r.lagSec)
		return k.ReplyRequested, nil
	case pglogrepl.XLogDataByteID:
		x, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return false, fmt.Errorf("changes: xlog data: %w", err)
		}
		if x.ServerWALEnd > r.serverEnd {
			r.serverEnd = x.ServerWALEnd
		}
		return false, r.apply(ctx, x.WALData)
	}
	return false, nil
}

func lagBytes(server, confirmed pglogrepl.LSN) int64 {
	if server <= confirmed {
		return 0
	}
	return int64(server - confirmed)
}

func (r *pgReader) apply(ctx context.Context, wal []byte) error {
	msg, err := pglogrepl.Parse(wal)
	if err != nil {
		return fmt.Errorf("changes: decode pgoutput message: %w", err)
	}
	switch m := msg.(type) {
	case *pglogrepl.RelationMessage:
		r.relations[m.RelationID] = m
	case *pglogrepl.BeginMessage:
		r.inTx = true
		r.a.begin(r.proofOf(m.Xid))
		r.src.logger.Debug("changes: begin", slog.Time("commit_time", m.CommitTime))
	case *pglogrepl.InsertMessage:
		rel, table, err := r.relation(m.RelationID)
		if err != nil || !r.a.watched(table) {
			return err
		}
		return r.a.add(ctx, Change{Table: table, Op: Insert, New: tupleRow(rel, m.Tuple, nil)})
	case *pglogrepl.UpdateMessage:
		rel, table, err := r.relation(m.RelationID)
		if err != nil || !r.a.watched(table) {
			return err
		}
		var old Row
		if m.OldTuple != nil {
			old = tupleRow(rel, m.OldTuple, nil)
		}
		return r.a.add(ctx, Change{Table: table, Op: Update, Old: old, New: tupleRow(rel, m.NewTuple, old)})
	case *pglogrepl.DeleteMessage:
		rel, table, err := r.relation(m.RelationID)
		if err != nil || !r.a.watched(table) {
			return err
		}
		return r.a.add(ctx, Change{Table: table, Op: Delete, Old: tupleRow(rel, m.OldTuple, nil)})
	case *pglogrepl.TruncateMessage:
		for _, id := range m.RelationIDs {
			_, table, err := r.relation(id)
			if err != nil {
				return err
			}
			if err := r.a.add(ctx, Change{Table: table, Op: Truncate}); err != nil {
				return err
			}
		}
	case *pglogrepl.CommitMessage:
		r.src.logger.Debug("changes: commit", slog.Int("changes", r.a.pending))
		r.p.rows.Add(int64(r.a.pending))
		if err := r.a.flush(ctx); err != nil {
			return err // the position is not confirmed: the transaction replays
		}
		r.inTx = false
		r.confirmed = m.TransactionEndLSN
		r.lagSec = time.Since(m.CommitTime).Seconds()
		if r.lagSec < 0 {
			r.lagSec = 0
		}
		r.src.metrics.Transactions.Inc()
		r.p.set(r.confirmed.String(), lagBytes(r.serverEnd, r.confirmed), r.lagSec)
		if time.Since(r.lastSent) > 200*time.Millisecond {
			return r.sendStatus(ctx)
		}
	}
	return nil
}

// proofOf proves transaction xid visible by a snapshot taken now (or an
// earlier one that already shows it finished): pgoutput sends a transaction
// once its commit record is flushed, before it leaves the in-progress list.
func (r *pgReader) proofOf(xid uint32) visibilityProof {
	return func(ctx context.Context) (bool, error) {
		if r.haveSnap && r.snap.visible(xid) {
			return true, nil
		}
		var text string
		if err := r.conn.QueryRow(ctx, "SELECT txid_current_snapshot()::text").Scan(&text); err != nil {
			return false, err
		}
		snap, err := parsePGSnapshot(text)
		if err != nil {
			return false, err
		}
		r.snap, r.haveSnap = snap, true
		return snap.visible(xid), nil
	}
}

func (r *pgReader) relation(id uint32) (*pglogrepl.RelationMessage, string, error) {
	rel, ok := r.relations[id]
	if !ok {
		return nil, "", fmt.Errorf("changes: change of relation %d before its description", id)
	}
	return rel, rel.Namespace + "." + rel.RelationName, nil
}

// tupleRow maps a tuple to column text values; an unchanged TOASTed
// column takes its value from old when old has it.
func tupleRow(rel *pglogrepl.RelationMessage, t *pglogrepl.TupleData, old Row) Row {
	row := Row{}
	if t == nil {
		return row
	}
	for i, c := range t.Columns {
		if i >= len(rel.Columns) {
			break
		}
		name := rel.Columns[i].Name
		switch c.DataType {
		case pglogrepl.TupleDataTypeText, pglogrepl.TupleDataTypeBinary:
			row[name] = string(c.Data)
		case pglogrepl.TupleDataTypeToast:
			if v, ok := old[name]; ok {
				row[name] = v
			}
		}
	}
	return row
}

// sendStatus confirms r.confirmed to the server.
func (r *pgReader) sendStatus(ctx context.Context) error {
	if r.confirmed == 0 {
		return nil
	}
	err := pglogrepl.SendStandbyStatusUpdate(ctx, r.rc, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: r.confirmed, WALFlushPosition: r.confirmed, WALApplyPosition: r.confirmed,
	})
	if err != nil {
		return fmt.Errorf("changes: confirm position %s: %w", r.confirmed, err)
	}
	r.lastSent = time.Now()
	return nil
}

// finalStatus confirms the position once more on the way out.
func (r *pgReader) finalStatus() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = r.sendStatus(ctx)
}

// status reads the slot's state.
func (s *pgSource) status(ctx context.Context, st *Status) error {
	conn, err := s.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	err = conn.QueryRow(ctx, `SELECT coalesce(confirmed_flush_lsn::text, ''), active, pg_current_wal_lsn()::text,
		coalesce(pg_current_wal_lsn() - confirmed_flush_lsn, 0)::bigint, coalesce(pg_current_wal_lsn() - restart_lsn, 0)::bigint
		FROM pg_replication_slots WHERE slot_name = $1`, s.cfg.Name).
		Scan(&st.Position, &st.SlotActive, &st.ServerPosition, &st.LagBytes, &st.RetainedBytes)
	if errors.Is(err, pgx.ErrNoRows) {
		return conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&st.ServerPosition)
	}
	if err != nil {
		return fmt.Errorf("changes: read slot %q: %w", s.cfg.Name, err)
	}
	st.Exists = true
	return nil
}
