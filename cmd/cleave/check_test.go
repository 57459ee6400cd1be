package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cleave-dev/cleave/internal/testenv"
)

// runCleave runs the cleave command line as main does and returns what it printed and
// its exit code.
func runCleave(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRootCmd(&app{})
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	var ee *exitError
	switch {
	case err == nil:
		code = exitOK
	case errors.As(err, &ee):
		code = ee.code
		if ee.err != nil {
			errOut.WriteString("cleave: " + ee.err.Error() + "\n")
		}
	default:
		code = exitCannot
		errOut.WriteString("cleave: " + err.Error() + "\n")
	}
	return out.String(), errOut.String(), code
}

// demoSchema is the shape of the demo's shop database.
const demoSchema = `
CREATE TABLE users (id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, email VARCHAR(190) NOT NULL, UNIQUE KEY (email));
CREATE TABLE orders (id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, user_id BIGINT UNSIGNED NOT NULL,
  total DECIMAL(12,2) NOT NULL, KEY (user_id), FOREIGN KEY (user_id) REFERENCES users (id));
CREATE TABLE order_items (order_id BIGINT UNSIGNED NOT NULL, line INT NOT NULL, user_id BIGINT UNSIGNED NOT NULL,
  sku VARCHAR(40) NOT NULL, PRIMARY KEY (order_id, line));
CREATE TABLE countries (code CHAR(2) NOT NULL PRIMARY KEY, name VARCHAR(64) NOT NULL)
`

// demoConfig creates the demo schema in a database of its own on the source of env and
// writes configs/demo.yaml pointing at it (and at env's addresses and flavor, and a topic
// prefix of its own). edit may change the YAML text further.
func demoConfig(t *testing.T, env testenv.Env, edit func(yaml string) string) (path, db string) {
	t.Helper()
	db = testenv.NewDatabase(t, env.SourceDSN)
	src := testenv.OpenDB(t, testenv.DSNWithDB(t, env.SourceDSN, db))
	for _, stmt := range strings.Split(demoSchema, ";") {
		if _, err := src.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	for _, dsn := range env.ShardDSNs() {
		shard := testenv.OpenDB(t, dsn)
		t.Cleanup(func() { shard.Exec("DROP DATABASE IF EXISTS `" + db + "`") })
	}
	demo, err := os.ReadFile("../../configs/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	yaml := strings.NewReplacer(
		"name: shop.", "name: "+db+".",
		"topic_prefix: demo", "topic_prefix: "+testenv.TopicPrefix(t),
		`"cleave:cleave@tcp(127.0.0.1:3307)/"`, `"`+env.SourceDSN+`"`,
		`"cleave:cleave@tcp(127.0.0.1:3308)/"`, `"`+env.Shard0DSN+`"`,
		`"cleave:cleave@tcp(127.0.0.1:3309)/"`, `"`+env.Shard1DSN+`"`,
		`["127.0.0.1:9092"]`, `["`+strings.Join(env.KafkaBrokers, `","`)+`"]`,
		"flavor: mariadb", "flavor: "+string(env.SourceFlavor),
	).Replace(string(demo))
	if !strings.Contains(yaml, "name: "+db+".users") {
		t.Fatalf("configs/demo.yaml no longer names shop.users:\n%s", demo)
	}
	if edit != nil {
		yaml = edit(yaml)
	}
	path = filepath.Join(t.TempDir(), "demo.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, db
}

func TestCheckPassesTheDemoConfigOnTheLocalServices(t *testing.T) {
	testenv.EachFlavor(t, checkPassesTheDemoConfig)
}

func checkPassesTheDemoConfig(t *testing.T, env testenv.Env) {
	path, _ := demoConfig(t, env, nil)
	stdout, stderr, code := runCleave(t, "check", "--config", path)
	if code != exitOK {
		t.Fatalf("exit %d, want 0\n%s%s", code, stdout, stderr)
	}
	lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
	for _, l := range lines[:len(lines)-1] {
		if !strings.HasPrefix(l, "OK   ") {
			t.Errorf("not OK: %s", l)
		}
	}
	if last := lines[len(lines)-1]; !strings.HasSuffix(last, " OK, 0 WARN, 0 FAIL") {
		t.Errorf("summary %q", last)
	}
	t.Logf("\n%s", stdout)
}

func TestCheckExitsOneWhenACheckFails(t *testing.T) {
	testenv.EachFlavor(t, checkExitsOneWhenACheckFails)
}

func checkExitsOneWhenACheckFails(t *testing.T, env testenv.Env) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	path, db := demoConfig(t, env, func(yaml string) string {
		yaml = strings.Replace(yaml, `["`+strings.Join(env.KafkaBrokers, `","`)+`"]`, `["`+closed+`"]`, 1)
		return strings.Replace(yaml, "shard_key: user_id", "shard_key: uid", 1)
	})
	stdout, _, code := runCleave(t, "check", "--config", path)
	if code != exitFinding {
		t.Fatalf("exit %d, want 1\n%s", code, stdout)
	}
	for _, want := range []string{
		"FAIL tables[1].shard_key: column \"uid\" not found in " + db + ".orders. Fix: ",
		"FAIL kafka " + closed + ": ",
		"2 FAIL\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
}

func TestCheckExitsTwoOnAnInvalidConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	yaml := `source:
  dsn: "cleave:secret@tcp(127.0.0.1:3307)/"
  server_id: 7
kafka:
  brokers: ["127.0.0.1:9092"]
shards:
  - name: s0
    dsn: "cleave:secret@tcp(127.0.0.1:3308)/"
tables:
  - name: shop.orders
    strategy: hash
`
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runCleave(t, "check", "--config", path)
	if code != exitCannot {
		t.Fatalf("exit %d, want 2\n%s%s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "tables[0].shard_key: required by strategy hash") {
		t.Errorf("stderr does not name the key:\n%s", stderr)
	}
	if stdout != "" {
		t.Errorf("no findings expected when the config is invalid, got:\n%s", stdout)
	}
}
