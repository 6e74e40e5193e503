package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TLSFiles are PEM files made for one test: a CA, a server certificate it
// signed (for 127.0.0.1, localhost and ServerName) and a client
// certificate it signed.
type TLSFiles struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey string
	// ServerName is a DNS name the server certificate carries that no
	// resolver knows (to test redis.tls.server_name).
	ServerName string
}

// NewTLSFiles makes a CA and its server and client certificates with
// crypto/x509, in the test's directory.
func NewTLSFiles(t testing.TB) TLSFiles {
	t.Helper()
	dir := t.TempDir()
	f := TLSFiles{ServerName: "redis.cachekeeper.test"}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	serial := int64(1)
	tmpl := func(cn string) *x509.Certificate {
		serial++
		return &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	}
	caKey := key()
	ca := tmpl("cachekeeper test CA")
	ca.IsCA, ca.BasicConstraintsValid, ca.KeyUsage = true, true, x509.KeyUsageCertSign|x509.KeyUsageDigitalSignature
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	f.CA = write("ca.pem", "CERTIFICATE", caDER)
	leaf := func(name string, usage x509.ExtKeyUsage, server bool) (string, string) {
		k := key()
		c := tmpl(name)
		c.KeyUsage, c.ExtKeyUsage = x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{usage}
		if server {
			c.DNSNames = []string{"localhost", f.ServerName}
			c.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		}
		der, err := x509.CreateCertificate(rand.Reader, c, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return write(name+".pem", "CERTIFICATE", der), write(name+"-key.pem", "EC PRIVATE KEY", kder)
	}
	f.ServerCert, f.ServerKey = leaf("server", x509.ExtKeyUsageServerAuth, true)
	f.ClientCert, f.ClientKey = leaf("client", x509.ExtKeyUsageClientAuth, false)
	return f
}

// NewTLSServer starts redis-server with TLS on TLSAddr, client certificates
// required (tls-auth-clients yes, Redis' default), and plain TCP on Addr
// for the test's own checks.
func NewTLSServer(t testing.TB) (*Server, TLSFiles, string) {
	t.Helper()
	f := NewTLSFiles(t)
	port := FreePort(t)
	s := NewServer(t, "--tls-port", fmt.Sprint(port), "--tls-cert-file", f.ServerCert, "--tls-key-file", f.ServerKey,
		"--tls-ca-cert-file", f.CA, "--tls-auth-clients", "yes")
	return s, f, fmt.Sprintf("127.0.0.1:%d", port)
}
