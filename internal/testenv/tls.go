package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/cleave-dev/cleave/internal/testenv/core"
)

// ServerTLS is what a private server needs to accept TLS connections: a certificate for
// 127.0.0.1 and localhost, its key and the certificate of the CA that signed it (PEM),
// made by NewServerTLS for one test.
type ServerTLS struct {
	CA, Cert, Key []byte
	// Require makes the server refuse TCP connections without TLS
	// (require_secure_transport=ON); its unix socket stays open without.
	Require bool
	pool    *x509.CertPool
}

// NewServerTLS makes a CA and a server certificate signed by it, valid for a day.
func NewServerTLS(t testing.TB) *ServerTLS {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatalf("testenv: TLS key: %v", err)
		}
		return k
	}
	caKey, srvKey := newKey(), newKey()
	now := time.Now().Add(-time.Hour)
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "cleave test CA"},
		NotBefore:             now,
		NotAfter:              now.Add(25 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatalf("testenv: CA certificate: %v", err)
	}
	srv := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now,
		NotAfter:     now.Add(25 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatalf("testenv: server certificate: %v", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		t.Fatalf("testenv: server key: %v", err)
	}
	s := &ServerTLS{
		CA:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		Cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER}),
		Key:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		pool: x509.NewCertPool(),
	}
	s.pool.AppendCertsFromPEM(s.CA)
	return s
}

// RegisterClientConfig registers with go-sql-driver a TLS configuration that trusts only
// the CA (tls=<name> in a DSN), removed at t.Cleanup, and returns its name.
func (s *ServerTLS) RegisterClientConfig(t testing.TB) string {
	t.Helper()
	name := "cleave-test-" + core.RandomHex(6)
	if err := mysql.RegisterTLSConfig(name, &tls.Config{RootCAs: s.pool}); err != nil {
		t.Fatalf("testenv: register TLS config: %v", err)
	}
	t.Cleanup(func() { mysql.DeregisterTLSConfig(name) })
	return name
}

// WithTLS returns dsn with its tls parameter set to mode ("true", "skip-verify",
// "preferred", a registered name).
func WithTLS(t testing.TB, dsn, mode string) string {
	t.Helper()
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatalf("testenv: parse DSN for %s: %v", core.DSNAddr(dsn), err)
	}
	cfg.TLS = nil
	cfg.TLSConfig = mode
	return cfg.FormatDSN()
}

// tlsFiles are the names of a server's TLS files in its folder.
const (
	tlsCAFile   = "tls-ca.pem"
	tlsCertFile = "tls-cert.pem"
	tlsKeyFile  = "tls-key.pem"
)

// writeTLS writes s's files into a server's folder; hostPath maps a name to its path.
func (s *ServerTLS) writeTLS(hostPath func(string) string) error {
	for name, data := range map[string][]byte{tlsCAFile: s.CA, tlsCertFile: s.Cert, tlsKeyFile: s.Key} {
		if err := os.WriteFile(hostPath(name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}
