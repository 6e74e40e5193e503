package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// RedisTLSConfig is how cachekeeper talks TLS to Redis (single server,
// Sentinel and Cluster alike): the CA that signed the server's certificate,
// the client certificate a server with tls-auth-clients asks for, and the
// name to check the server's certificate against. Setting any field turns
// TLS on, also with a redis:// URL.
type RedisTLSConfig struct {
	// CAFile is a PEM file of the CA certificates to trust (default: the
	// system's).
	CAFile string `yaml:"ca_file,omitempty"`
	// CertFile and KeyFile are the client certificate and its key (PEM),
	// both or neither.
	CertFile string `yaml:"cert_file,omitempty"`
	KeyFile  string `yaml:"key_file,omitempty"`
	// ServerName is the name the server's certificate must carry (default:
	// the host of the URL or address).
	ServerName string `yaml:"server_name,omitempty"`
}

// IsZero reports whether no field is set (TLS then follows the URL:
// rediss:// or not).
func (t RedisTLSConfig) IsZero() bool { return t == RedisTLSConfig{} }

// apply returns base (the URL's TLS settings, or nil) with t's files and
// name applied.
func (t RedisTLSConfig) apply(base *tls.Config) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if base != nil {
		c = base.Clone()
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("redis.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis.tls.ca_file %s holds no PEM certificate", t.CAFile)
		}
		c.RootCAs = pool
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, fmt.Errorf("redis.tls.cert_file and redis.tls.key_file go together: set both (the client certificate and its key) or neither")
	}
	if t.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("redis.tls.cert_file/key_file: %w", err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	if t.ServerName != "" {
		c.ServerName = t.ServerName
	}
	return c, nil
}
