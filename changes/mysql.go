package changes

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/sqldb"
	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"
	"vitess.io/vitess/go/mysql"
	"vitess.io/vitess/go/mysql/binlog"
	querypb "vitess.io/vitess/go/vt/proto/query"
)

// myPosition is a binlog file and offset: every change before it is
// enqueued.
type myPosition struct {
	file string
	pos  uint64
}

func (p myPosition) String() string { return p.file + ":" + strconv.FormatUint(p.pos, 10) }

func parseMyPosition(s string) (myPosition, error) {
	i := strings.LastIndexByte(s, ':')
	if i <= 0 {
		return myPosition{}, fmt.Errorf("binlog position %q is not file:offset", s)
	}
	n, err := strconv.ParseUint(s[i+1:], 10, 32)
	if err != nil {
		return myPosition{}, fmt.Errorf("binlog position %q is not file:offset", s)
	}
	return myPosition{file: s[:i], pos: n}, nil
}

// mySource follows the MySQL/MariaDB row-based binlog as a replica would,
// with the position kept in Redis.
type mySource struct {
	cfg     Config
	posKey  string
	metrics *Metrics
	logger  *slog.Logger
	params  mysql.ConnParams
	// db is the SQL connection of the running prepare, stream or status.
	db     *sqlx.DB
	schema string // the URL's database: where unqualified tables live
}

func newMySQL(cfg Config, k keys.Keys, m *Metrics, logger *slog.Logger) (*mySource, error) {
	u, err := url.Parse(cfg.Database.URL)
	if err != nil || !strings.Contains(cfg.Database.URL, "://") {
		return nil, setupErrorf("the MySQL change stream needs database.url as mysql://user:password@host:3306/db, got an unparsable URL")
	}
	port := 3306
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil {
			return nil, setupErrorf("database.url port %q is not a number", p)
		}
	}
	pass, _ := u.User.Password()
	s := &mySource{cfg: cfg, posKey: k.ChangesPosition(cfg.Name), metrics: m, logger: logger,
		schema: strings.TrimPrefix(u.Path, "/"),
		params: mysql.ConnParams{Host: u.Hostname(), Port: port, Uname: u.User.Username(), Pass: pass, DbName: strings.TrimPrefix(u.Path, "/"), ConnectTimeoutMs: 10000}}
	return s, nil
}

func (s *mySource) close() {}

// withDB runs fn with an SQL connection pool open for its duration.
func (s *mySource) withDB(fn func(db *sqlx.DB) error) error {
	db, err := sqldb.Open(s.cfg.Database)
	if err != nil {
		return err
	}
	db.SetMaxOpenConns(2)
	defer db.Close()
	return fn(db)
}

// prepare refuses a server without a row-based binlog, resolves the tables
// and stores the server's current position when none is kept yet.
func (s *mySource) prepare(ctx context.Context) (resolved map[string]string, err error) {
	err = s.withDB(func(db *sqlx.DB) error {
		resolved, err = s.prepareDB(ctx, db)
		return err
	})
	return resolved, err
}

func (s *mySource) prepareDB(ctx context.Context, db *sqlx.DB) (map[string]string, error) {
	var logBin int
	var format, image string
	if err := db.QueryRowContext(ctx, "SELECT @@GLOBAL.log_bin, @@GLOBAL.binlog_format, @@GLOBAL.binlog_row_image").Scan(&logBin, &format, &image); err != nil {
		return nil, fmt.Errorf("changes: read the binlog settings: %w", err)
	}
	if logBin == 0 {
		return nil, setupErrorf("the MySQL/MariaDB binlog is off: start the server with log_bin (e.g. --log-bin, and server_id set) and binlog_format=ROW")
	}
	if !strings.EqualFold(format, "ROW") {
		return nil, setupErrorf("binlog_format is %s but the change stream needs ROW: SET GLOBAL binlog_format = 'ROW' and put binlog_format=ROW in the server's configuration (sessions opened before keep the old format)", format)
	}
	if !strings.EqualFold(image, "FULL") {
		s.logger.Warn("changes: binlog_row_image is not FULL: an UPDATE's before image may lack the id and tag columns; SET GLOBAL binlog_row_image = 'FULL'", slog.String("binlog_row_image", image))
	}
	resolved := map[string]string{}
	for _, t := range tables(s.cfg.Caches) {
		schema, name, ok := strings.Cut(t, ".")
		if !ok {
			schema, name = s.schema, t
		}
		var n int
		if err := db.GetContext(ctx, &n, "SELECT count(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?", schema, name); err != nil {
			return nil, fmt.Errorf("changes: look up table %q: %w", t, err)
		}
		if n == 0 {
			return nil, setupErrorf("table %q of a changes: block does not exist (database %q)", t, schema)
		}
		resolved[t] = schema + "." + name
	}
	stored, err := s.cfg.Redis.Get(ctx, s.posKey).Result()
	if err == nil {
		if _, err := parseMyPosition(stored); err != nil {
			return nil, setupErrorf("the position kept in Redis at %s is unreadable (%v): delete the key to start from the server's current position", s.posKey, err)
		}
		return resolved, nil
	}
	if !errors.Is(err, redis.Nil) {
		return nil, err
	}
	cur, err := s.serverPosition(ctx, db)
	if err != nil {
		return nil, err
	}
	if err := s.cfg.Redis.SetNX(ctx, s.posKey, cur.String(), 0).Err(); err != nil {
		return nil, err
	}
	s.logger.Info("changes: no binlog position kept yet; following from the server's current one", slog.String("position", cur.String()))
	return resolved, nil
}

// serverPosition is SHOW MASTER STATUS (SHOW BINARY LOG STATUS on MySQL 8.4+).
func (s *mySource) serverPosition(ctx context.Context, db *sqlx.DB) (myPosition, error) {
	for _, q := range []string{"SHOW MASTER STATUS", "SHOW BINARY LOG STATUS"} {
		rows, err := db.QueryxContext(ctx, q)
		if err != nil {
			continue
		}
		var p myPosition
		found := false
		if rows.Next() {
			m := map[string]any{}
			if err := rows.MapScan(m); err == nil {
				p.file = asString(m["File"])
				p.pos, _ = strconv.ParseUint(asString(m["Position"]), 10, 64)
				found = p.file != ""
			}
		}
		rows.Close()
		if found {
			return p, nil
		}
	}
	return myPosition{}, setupErrorf("SHOW MASTER STATUS returned nothing: the binlog is off, or the user lacks REPLICATION CLIENT (GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO the user)")
}

func asString(v any) string {
	switch x := v.(type) {
	case []byte:
		return string(x)
	case string:
		return x
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

// lag is the bytes of binlog written after p.
func (s *mySource) lag(ctx context.Context, db *sqlx.DB, p myPosition) (int64, myPosition, error) {
	rows, err := db.QueryxContext(ctx, "SHOW BINARY LOGS")
	if err != nil {
		return 0, myPosition{}, err
	}
	defer rows.Close()
	var total int64
	var last myPosition
	counting := false
	for rows.Next() {
		m := map[string]any{}
		if err := rows.MapScan(m); err != nil {
			return 0, myPosition{}, err
		}
		name := asString(m["Log_name"])
		size, _ := strconv.ParseInt(asString(m["File_size"]), 10, 64)
		last = myPosition{file: name, pos: uint64(size)}
		if name == p.file {
			counting = true
			total += size - int64(p.pos)
			continue
		}
		if counting {
			total += size
		}
	}
	if total < 0 {
		total = 0
	}
	return total, last, rows.Err()
}

// column is one column of a table, by ordinal position.
type column struct {
	name     string
	unsigned bool
	binary   bool
	primary  bool
}

// stream dumps the binlog from the kept position, applies each
// transaction and stores the position after its jobs are enqueued.
func (s *mySource) stream(ctx context.Context, a *applier, p *progress) error {
	return s.withDB(func(db *sqlx.DB) error { return s.streamDB(ctx, db, a, p) })
}

func (s *mySource) streamDB(ctx context.Context, db *sqlx.DB, a *applier, p *progress) error {
	stored, err := s.cfg.Redis.Get(ctx, s.posKey).Result()
	if err != nil {
		return fmt.Errorf("changes: read the kept binlog position: %w", err)
	}
	start, err := parseMyPosition(stored)
	if err != nil {
		return err
	}
	conn, err := mysql.Connect(ctx, &s.params)
	if err != nil {
		return fmt.Errorf("changes: connect to MySQL for the binlog: %w", err)
	}
	stop := context.AfterFunc(ctx, conn.Close)
	defer stop()
	defer conn.Close()
	for _, q := range []string{
		"SET @master_binlog_checksum = @@global.binlog_checksum, @source_binlog_checksum = @@global.binlog_checksum",
		"SET @master_heartbeat_period = " + strconv.FormatInt(int64(s.cfg.StatusInterval), 10),
	} {
		if _, err := conn.ExecuteFetch(q, 0, false); err != nil {
			return fmt.Errorf("changes: %s: %w", q, err)
		}
	}
	if err := conn.SendBinlogDumpCommand(s.cfg.ServerID, start.file, uint32(start.pos)); err != nil {
		return fmt.Errorf("changes: start the binlog dump at %s: %w", start, err)
	}
	s.logger.Info("changes: streaming the binlog", slog.String("from", start.String()), slog.Uint64("server_id", uint64(s.cfg.ServerID)))
	r := &myReader{src: s, db: db, a: a, p: p, cur: start, confirmed: start, tables: map[uint64]*mysql.TableMap{}, cols: map[string][]column{}}
	defer r.closeLockConn()
	type event struct {
		ev  mysql.BinlogEvent
		err error
	}
	events := make(chan event, 256)
	go func() {
		defer close(events)
		for {
			ev, err := conn.ReadBinlogEvent()
			select {
			case events <- event{ev, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	tick := time.NewTicker(s.cfg.StatusInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			r.measure(ctx)
		case e, ok := <-events:
			if !ok || ctx.Err() != nil {
				return nil
			}
			if e.err != nil {
				if strings.Contains(e.err.Error(), "Access denied") || strings.Contains(e.err.Error(), "REPLICATION SLAVE") {
					return setupErrorf("the binlog dump was refused (%v): GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO the user", e.err)
				}
				return fmt.Errorf("changes: read the binlog: %w", e.err)
			}
			if err := r.handle(ctx, e.ev); err != nil {
				return err
			}
		}
	}
}

// myReader is the state of one binlog dump.
type myReader struct {
	src       *mySource
	db        *sqlx.DB
	a         *applier
	p         *progress
	format    mysql.BinlogFormat
	cur       myPosition // where the next event starts
	confirmed myPosition
	inTx      bool
	lastTS    uint32
	tables    map[uint64]*mysql.TableMap
	cols      map[string][]column
	lockConn  *sql.Conn // the locking reads of visibility proofs
}

func (r *myReader) handle(ctx context.Context, ev mysql.BinlogEvent) error {
	if !ev.IsValid() {
		return errors.New("changes: invalid binlog event")
	}
	if ev.IsFormatDescription() {
		f, err := ev.Format()
		if err != nil {
			return fmt.Errorf("changes: binlog format description: %w", err)
		}
		r.format = f
		return nil
	}
	if r.format.IsZero() {
		// Before the format description only the first rotate comes.
		if ev.IsRotate() {
			return r.rotate(ev)
		}
		return nil
	}
	ev, _, err := ev.StripChecksum(r.format)
	if err != nil {
		return fmt.Errorf("changes: binlog checksum: %w", err)
	}
	if next := ev.NextPosition(); next > 0 && !ev.IsRotate() && !ev.IsHeartbeat() {
		r.cur.pos = next
	}
	if ts := ev.Timestamp(); ts > 0 {
		r.lastTS = ts
	}
	switch {
	case ev.IsRotate():
		return r.rotate(ev)
	case ev.IsHeartbeat():
		if !r.inTx {
			r.p.set(r.confirmed.String(), 0, 0)
		}
	case ev.IsGTID():
		_, begin, _, _, err := ev.GTID(r.format)
		if err == nil && begin {
			r.inTx = true
		}
	case ev.IsTableMap():
		tm, err := ev.TableMap(r.format)
		if err != nil {
			return fmt.Errorf("changes: binlog table map: %w", err)
		}
		r.tables[ev.TableID(r.format)] = tm
	case ev.IsWriteRows(), ev.IsUpdateRows(), ev.IsDeleteRows():
		r.inTx = true
		return r.rows(ctx, ev)
	case ev.IsXID():
		return r.commit(ctx)
	case ev.IsQuery():
		q, err := ev.Query(r.format)
		if err != nil {
			return fmt.Errorf("changes: binlog query: %w", err)
		}
		return r.query(ctx, q)
	}
	return nil
}

func (r *myReader) rotate(ev mysql.BinlogEvent) error {
	f := r.format
	if f.IsZero() {
		f = mysql.BinlogFormat{HeaderLength: 19}
	}
	file, pos, err := ev.NextLogFile(f)
	if err != nil {
		return fmt.Errorf("changes: binlog rotate: %w", err)
	}
	r.cur = myPosition{file: file, pos: pos}
	if !r.inTx && r.a.pending == 0 {
		r.confirmed = r.cur
	}
	return nil
}

// query handles statement events: BEGIN, COMMIT (non-transactional
// tables), TRUNCATE; other DDL passes, with the position confirmed.
func (r *myReader) query(ctx context.Context, q mysql.Query) error {
	sql := strings.TrimSpace(q.SQL)
	upper := strings.ToUpper(sql)
	switch {
	case upper == "BEGIN":
		r.inTx = true
		return nil
	case upper == "COMMIT":
		return r.commit(ctx)
	case strings.HasPrefix(upper, "TRUNCATE"):
		f := strings.Fields(sql)
		name := f[len(f)-1]
		name = strings.ReplaceAll(name, "`", "")
		if !strings.Contains(name, ".") {
			name = q.Database + "." + name
		}
		if err := r.a.add(ctx, Change{Table: name, Op: Truncate}); err != nil {
			return err
		}
		return r.commit(ctx)
	case r.inTx || strings.HasPrefix(sql, "#"):
		// Comments (MariaDB's stand-ins for events an old replica would not
		// know) and statements inside a transaction end nothing.
		return nil
	}
	// Other DDL: its own transaction.
	return r.commit(ctx)
}

// commit enqueues the transaction's jobs, then keeps the position.
func (r *myReader) commit(ctx context.Context) error {
	r.p.rows.Add(int64(r.a.pending))
	if err := r.a.flush(ctx); err != nil {
		return err
	}
	r.inTx = false
	r.confirmed = r.cur
	if err := r.src.cfg.Redis.Set(ctx, r.src.posKey, r.confirmed.String(), 0).Err(); err != nil {
		return fmt.Errorf("changes: keep the binlog position: %w", err)
	}
	r.src.metrics.Transactions.Inc()
	lag := time.Since(time.Unix(int64(r.lastTS), 0)).Seconds()
	if lag < 0 {
		lag = 0
	}
	r.p.setPosition(r.confirmed.String(), lag)
	return nil
}

// measure updates the lag in bytes from SHOW BINARY LOGS.
func (r *myReader) measure(ctx context.Context) {
	n, _, err := r.src.lag(ctx, r.db, r.confirmed)
	if err == nil {
		r.p.setLagBytes(n)
	}
}

func (r *myReader) rows(ctx context.Context, ev mysql.BinlogEvent) error {
	tm, ok := r.tables[ev.TableID(r.format)]
	if !ok {
		return errors.New("changes: binlog rows event before its table map")
	}
	table := tm.Database + "." + tm.Name
	if !r.a.watched(table) {
		return nil
	}
	rs, err := ev.Rows(r.format, tm)
	if err != nil {
		return fmt.Errorf("changes: binlog rows of %s: %w", table, err)
	}
	cols, err := r.columns(ctx, tm)
	if err != nil {
		return err
	}
	for i := range rs.Rows {
		row := &rs.Rows[i]
		var c Change
		c.Table = table
		switch {
		case ev.IsWriteRows():
			c.Op = Insert
			c.New, err = decodeImage(tm, cols, rs.DataColumns, row.NullColumns, row.Data)
		case ev.IsUpdateRows():
			c.Op = Update
			if c.Old, err = decodeImage(tm, cols, rs.IdentifyColumns, row.NullIdentifyColumns, row.Identify); err == nil {
				c.New, err = decodeImage(tm, cols, rs.DataColumns, row.NullColumns, row.Data)
			}
		default:
			c.Op = Delete
			c.Old, err = decodeImage(tm, cols, rs.IdentifyColumns, row.NullIdentifyColumns, row.Identify)
		}
		if err != nil {
			return fmt.Errorf("changes: decode a row of %s: %w", table, err)
		}
		if r.a.proof == nil {
			r.a.begin(r.proofOf(tm, cols, c))
		}
		if err := r.a.add(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

// columns returns the table's columns by position (the binlog carries no
// names unless binlog_row_metadata=FULL), read from information_schema
// again when the column count changed.
func (r *myReader) columns(ctx context.Context, tm *mysql.TableMap) ([]column, error) {
	key := tm.Database + "." + tm.Name
	if c, ok := r.cols[key]; ok && len(c) == len(tm.Types) {
		return c, nil
	}
	var rows []struct {
		Name string `db:"COLUMN_NAME"`
		Type string `db:"COLUMN_TYPE"`
		Key  string `db:"COLUMN_KEY"`
	}
	err := r.db.SelectContext(ctx, &rows, `SELECT COLUMN_NAME, COLUMN_TYPE, COLUMN_KEY FROM information_schema.COLUMNS
		WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION`, tm.Database, tm.Name)
	if err != nil {
		return nil, fmt.Errorf("changes: read the columns of %s: %w", key, err)
	}
	if len(rows) != len(tm.Types) {
		return nil, fmt.Errorf("changes: %s has %d columns but the binlog row has %d (the table changed since; restart to replay)", key, len(rows), len(tm.Types))
	}
	cols := make([]column, len(rows))
	for i, c := range rows {
		t := strings.ToLower(c.Type)
		cols[i] = column{name: c.Name, unsigned: strings.Contains(t, "unsigned"),
			binary: strings.Contains(t, "binary") || strings.Contains(t, "blob"), primary: c.Key == "PRI"}
	}
	r.cols[key] = cols
	return cols, nil
}

// decodeImage decodes one row image into column text values.
func decodeImage(tm *mysql.TableMap, cols []column, present, nulls mysql.Bitmap, data []byte) (Row, error) {
	row := Row{}
	pos, valueIndex := 0, 0
	for c := 0; c < present.Count(); c++ {
		if !present.Bit(c) {
			continue
		}
		if nulls.Bit(valueIndex) {
			valueIndex++
			continue
		}
		field := &querypb.Field{Type: querypb.Type_INT64}
		switch {
		case cols[c].unsigned:
			field.Type = querypb.Type_UINT64
		case cols[c].binary:
			field.Type = querypb.Type_VARBINARY
		}
		v, l, err := binlog.CellValue(data, pos, tm.Types[c], tm.Metadata[c], field, false)
		if err != nil {
			return nil, err
		}
		row[cols[c].name] = v.ToString()
		pos += l
		valueIndex++
	}
	return row, nil
}

// status reads the kept position and the server's.
func (s *mySource) status(ctx context.Context, st *Status) error {
	return s.withDB(func(db *sqlx.DB) error { return s.statusDB(ctx, db, st) })
}

func (s *mySource) statusDB(ctx context.Context, db *sqlx.DB, st *Status) error {
	stored, err := s.cfg.Redis.Get(ctx, s.posKey).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	cur, err := s.serverPosition(ctx, db)
	if err != nil {
		return err
	}
	st.ServerPosition = cur.String()
	if stored == "" {
		return nil
	}
	p, err := parseMyPosition(stored)
	if err != nil {
		return err
	}
	st.Exists, st.Position = true, p.String()
	st.LagBytes, _, err = s.lag(ctx, db, p)
	return err
}
