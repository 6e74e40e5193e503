package config

import (
	"errors"
	"fmt"
	"strings"
)

// DatabaseConfig says where cached rows come from.
type DatabaseConfig struct {
	// URL is postgres://..., mysql://user:password@host:3306/db, or
	// sqlite:///absolute/path.db / sqlite://relative.db / sqlite://:memory:.
	// A driver-native DSN may be given instead, with Driver set.
	URL string `yaml:"url"`
	// Driver is postgres, mysql or sqlite; empty means "from the URL scheme".
	Driver string `yaml:"driver,omitempty"`
	// MaxOpenConns bounds the connection pool (default 10).
	MaxOpenConns int `yaml:"max_open_conns,omitempty"`
}

func (d *DatabaseConfig) validate() error {
	if d.URL == "" {
		return errors.New("database.url is empty; set it (or CACHEKEEPER_DATABASE_URL), e.g. postgres://user@host:5432/db")
	}
	if _, err := d.DriverName(); err != nil {
		return err
	}
	if d.MaxOpenConns < 0 {
		return fmt.Errorf("database.max_open_conns must be 0 (default) or positive, got %d", d.MaxOpenConns)
	}
	return nil
}

// DriverName returns postgres, mysql or sqlite.
func (d *DatabaseConfig) DriverName() (string, error) {
	if d.Driver != "" {
		switch d.Driver {
		case "postgres", "mysql", "sqlite":
			return d.Driver, nil
		case "pgx", "postgresql":
			return "postgres", nil
		case "sqlite3":
			return "sqlite", nil
		case "mariadb":
			return "mysql", nil
		}
		return "", fmt.Errorf("database.driver %q must be postgres, mysql or sqlite", d.Driver)
	}
	scheme, _, ok := strings.Cut(d.URL, "://")
	if !ok {
		return "", fmt.Errorf("database.url %q has no scheme; use postgres://, mysql:// or sqlite://, or set database.driver", RedactURL(d.URL))
	}
	switch strings.ToLower(scheme) {
	case "postgres", "postgresql":
		return "postgres", nil
	case "mysql", "mariadb":
		return "mysql", nil
	case "sqlite", "sqlite3", "file":
		return "sqlite", nil
	}
	return "", fmt.Errorf("database.url scheme %q is not supported; use postgres://, mysql:// or sqlite://", scheme)
}
