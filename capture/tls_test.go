package capture

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/kafkax"
)

func TestReplicaConnectionTakesTheTLSOfTheSourceDSN(t *testing.T) {
	registered := &tls.Config{ServerName: "db.internal", MinVersion: tls.VersionTLS13}
	if err := mysql.RegisterTLSConfig("capture-unit", registered); err != nil {
		t.Fatal(err)
	}
	defer mysql.DeregisterTLSConfig("capture-unit")
	for _, tc := range []struct {
		name, dsn string
		want      func(c *tls.Config) bool
	}{
		{"no tls parameter: none", "u:p@tcp(10.0.0.1:3306)/", func(c *tls.Config) bool { return c == nil }},
		{"tls=false: none", "u:p@tcp(10.0.0.1:3306)/?tls=false", func(c *tls.Config) bool { return c == nil }},
		{"tls=true: verified, against the DSN's host", "u:p@tcp(10.0.0.1:3306)/?tls=true", func(c *tls.Config) bool {
			return c != nil && !c.InsecureSkipVerify && c.ServerName == "10.0.0.1" && c.RootCAs == nil
		}},
		{"tls=skip-verify: encrypted, not verified", "u:p@tcp(10.0.0.1:3306)/?tls=skip-verify", func(c *tls.Config) bool {
			return c != nil && c.InsecureSkipVerify
		}},
		{"a registered name: that configuration", "u:p@tcp(10.0.0.1:3306)/?tls=capture-unit", func(c *tls.Config) bool {
			return c != nil && c != registered && c.ServerName == "db.internal" && c.MinVersion == tls.VersionTLS13 && !c.InsecureSkipVerify
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dc, err := mysql.ParseDSN(tc.dsn)
			if err != nil {
				t.Fatal(err)
			}
			got, err := replicaTLS(context.Background(), dc, nil)
			if err != nil || !tc.want(got) {
				t.Fatalf("replica TLS %+v, %v", got, err)
			}
		})
	}
}

// TestSourceRequiringTLSIsReadOverTLS runs capture against a source that refuses
// connections without TLS (require_secure_transport=ON): with TLS in source.dsn, the
// replica connection uses it too and capture streams; without, capture stops at once
// saying what to add to the DSN.
func TestSourceRequiringTLSIsReadOverTLS(t *testing.T) {
	t.Parallel()
	testenv.EachFlavor(t, testSourceRequiringTLSIsReadOverTLS)
}

func testSourceRequiringTLSIsReadOverTLS(t *testing.T, e testenv.Env) {
	t.Parallel()
	certs := testenv.NewServerTLS(t)
	certs.Require = true
	m := testenv.StartServer(t, e.SourceFlavor, testenv.ServerOptions{TLS: certs})
	trusted := certs.RegisterClientConfig(t)
	f := newFixtureOn(t, e, testenv.WithTLS(t, m.DSN(), trusted))
	f.exec("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))")
	// with is the fixture of a subtest whose captures reach the source with dsn.
	with := func(t *testing.T, dsn string) *fixture {
		g := *f
		g.t, g.env.SourceDSN = t, dsn
		return &g
	}
	// capture is a capture through dsn under a topic prefix of its own.
	capture := func(t *testing.T, dsn, prefix string) *Capture {
		c, err := New(with(t, dsn).configureWith(f.prefix+"-"+prefix, []string{"t"}, nil), Options{})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	run := func(c *Capture) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		return c.Run(ctx)
	}

	t.Run("without TLS in source.dsn capture stops at once, naming the fix", func(t *testing.T) {
		err := run(capture(t, m.DSN(), "plain"))
		if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "require_secure_transport") || !strings.Contains(err.Error(), "tls=true") {
			t.Fatalf("Run = %v, want an immediate error saying the source requires TLS and to add tls= to the DSN", err)
		}
	})
	t.Run("tls=true verifies the server against the system's CAs, which do not know the test's", func(t *testing.T) {
		if err := run(capture(t, testenv.WithTLS(t, m.DSN(), "true"), "system")); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("Run = %v, want a certificate verification error", err)
		}
	})
	for i, tc := range []struct{ name, mode string }{
		{"a registered configuration trusting the test's CA", trusted},
		{"tls=skip-verify", "skip-verify"},
		{"tls=preferred", "preferred"},
	} {
		t.Run("with "+tc.name+" the replica connection uses TLS too", func(t *testing.T) {
			g := with(t, testenv.WithTLS(t, m.DSN(), tc.mode))
			prefix := f.prefix + "-" + tc.mode
			r := g.start(g.configureWith(prefix, []string{"t"}, nil))
			id := 10 * (i + 1)
			f.exec("INSERT INTO t VALUES ("+itoa(id)+", 'a')", "UPDATE t SET v = 'b' WHERE id = "+itoa(id))
			r.waitAcknowledged(t, f.sourcePosition())
			got := map[string]event.Op{}
			for _, rec := range rowEvents(readTopic(t, f.env.KafkaBrokers, kafkax.TableTopic(prefix, f.db, "t"))) {
				got[rec.key+string(rec.ev.Op)] = rec.ev.Op
			}
			if got["["+itoa(id)+"]c"] == "" || got["["+itoa(id)+"]u"] == "" {
				t.Fatalf("events %v, want the insert and update of %d", got, id)
			}
		})
	}
}
