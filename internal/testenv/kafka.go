package testenv

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cleave-dev/cleave/internal/testenv/core"
)

// EnvKafkaJars names the directory of the Kafka broker's jars (printed by
// `scripts/services.sh env`); without it testenv asks `scripts/services.sh kafka-jars`,
// which resolves them with Maven once into .local/cache.
const EnvKafkaJars = "CLEAVE_KAFKA_JARS"

// Kafka is a private single-node KRaft Kafka broker on free loopback ports, with its data
// in the test's temporary directory, run from the same jars as the shared one. Its
// methods fail the test on error, so call them from the test's goroutine. It is killed
// and removed at t.Cleanup.
type Kafka struct {
	t        testing.TB
	java     string
	jars     string
	dir      string
	port     int
	ctrlPort int
	p        *core.Proc
}

// StartKafka formats a fresh log directory, starts the broker and waits until it answers
// a metadata request.
func StartKafka(t testing.TB) *Kafka {
	t.Helper()
	skipIfShort(t)
	jars, err := kafkaJars()
	if err != nil {
		unavailable(t, "Kafka jars", "scripts/services.sh kafka-jars", err)
		return nil
	}
	java, err := javaPath()
	if err != nil {
		unavailable(t, "java", "PATH", err)
		return nil
	}
	k := &Kafka{t: t, java: java, jars: jars, dir: t.TempDir()}
	t.Cleanup(func() {
		if k.p != nil {
			k.p.Kill()
		}
	})
	for attempt := 1; ; attempt++ {
		if k.port, err = core.FreePort(); err == nil {
			k.ctrlPort, err = core.FreePort()
		}
		if err != nil {
			t.Fatalf("testenv: free port: %v", err)
		}
		if k.port == k.ctrlPort {
			continue
		}
		if attempt == 1 {
			k.format()
		} else {
			// The storage is bound to no port: only the config needs rewriting.
			k.writeConfig()
		}
		err = k.start()
		if err == nil {
			return k
		}
		if !errors.Is(err, errPortTaken) || attempt == 3 {
			t.Fatalf("testenv: %v", err)
		}
	}
}

var (
	jarsOnce sync.Once
	jarsDir  string
	jarsErr  error
)

func kafkaJars() (string, error) {
	jarsOnce.Do(func() {
		if dir := os.Getenv(EnvKafkaJars); dir != "" && hasKafkaJar(dir) {
			jarsDir = dir
			return
		}
		root, err := repoRoot()
		if err != nil {
			jarsErr = err
			return
		}
		cmd := exec.Command("bash", filepath.Join(root, "scripts", "services.sh"), "kafka-jars")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			jarsErr = fmt.Errorf("scripts/services.sh kafka-jars: %v\n%s", err, stderr.String())
			return
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		dir := lines[len(lines)-1]
		if !hasKafkaJar(dir) {
			jarsErr = fmt.Errorf("scripts/services.sh kafka-jars printed %q, which holds no kafka_2.13 jar", dir)
			return
		}
		jarsDir = dir
	})
	return jarsDir, jarsErr
}

func hasKafkaJar(dir string) bool {
	m, _ := filepath.Glob(filepath.Join(dir, "kafka_2.13-*.jar"))
	return len(m) > 0
}

func javaPath() (string, error) {
	if home := os.Getenv("JAVA_HOME"); home != "" {
		if p := filepath.Join(home, "bin", "java"); fileSize(p) > 0 {
			return p, nil
		}
	}
	p, err := exec.LookPath("java")
	if err != nil {
		return "", errors.New("java not found on PATH: install a JDK 17 (openjdk-17-jre-headless)")
	}
	return p, nil
}

func (k *Kafka) logDir() string     { return filepath.Join(k.dir, "data") }
func (k *Kafka) configPath() string { return filepath.Join(k.dir, "server.properties") }

// ServerLog is the path of the broker's log file.
func (k *Kafka) ServerLog() string { return filepath.Join(k.dir, "server.log") }

// Addr is the broker's "127.0.0.1:port"; it stays the same across Stop and Start.
func (k *Kafka) Addr() string { return "127.0.0.1:" + strconv.Itoa(k.port) }

// Brokers is the bootstrap list for clients.
func (k *Kafka) Brokers() []string { return []string{k.Addr()} }

// Running reports whether the broker process is alive.
func (k *Kafka) Running() bool { return k.p != nil && !k.p.Exited() }

// kafkaTemplate is the server.properties of every local broker, relative to the
// repository: scripts/services.sh renders the same file for the shared one.
const kafkaTemplate = "scripts/kafka/server.properties.tmpl"

// privateKafkaSizing fills the template's sizing for a broker that lives for one test on
// a busy machine: fewer internal partitions and threads than the shared broker's, and
// Kafka's default segment size.
var privateKafkaSizing = map[string]string{
	"OFFSETS_PARTITIONS": "4",
	"TXN_PARTITIONS":     "2",
	"SEGMENT_BYTES":      "1073741824",
	"NETWORK_THREADS":    "2",
	"IO_THREADS":         "2",
}

var placeholder = regexp.MustCompile(`@[A-Z_]+@`)

// renderTemplate returns the file at path with its lines that start with "##" dropped
// and each @NAME@ replaced by vars[NAME], as kafka_properties in scripts/services.sh does.
// A placeholder without a value is an error.
func renderTemplate(path string, vars map[string]string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var out strings.Builder
	var missing []string
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "##") {
			continue
		}
		out.WriteString(placeholder.ReplaceAllStringFunc(line, func(p string) string {
			v, ok := vars[strings.Trim(p, "@")]
			if !ok {
				missing = append(missing, p)
			}
			return v
		}))
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("%s: no value for %s", path, strings.Join(missing, ", "))
	}
	return out.String(), nil
}

func (k *Kafka) writeConfig() {
	k.t.Helper()
	root, err := repoRoot()
	if err != nil {
		k.t.Fatalf("testenv: Kafka config template: %v", err)
	}
	vars := map[string]string{
		"PORT":            strconv.Itoa(k.port),
		"CONTROLLER_PORT": strconv.Itoa(k.ctrlPort),
		"LOG_DIR":         k.logDir(),
	}
	maps.Copy(vars, privateKafkaSizing)
	cfg, err := renderTemplate(filepath.Join(root, kafkaTemplate), vars)
	if err != nil {
		k.t.Fatalf("testenv: Kafka config: %v", err)
	}
	logCfg := fmt.Sprintf(`status = warn
appender.server.type = File
appender.server.name = SERVER
appender.server.fileName = %s
appender.server.layout.type = PatternLayout
appender.server.layout.pattern = [%%d] %%p %%m (%%c)%%n
rootLogger.level = INFO
rootLogger.appenderRef.server.ref = SERVER
`, k.ServerLog())
	if err := os.WriteFile(k.configPath(), []byte(cfg), 0o644); err != nil {
		k.t.Fatalf("testenv: %v", err)
	}
	if err := os.WriteFile(filepath.Join(k.dir, "log4j2.properties"), []byte(logCfg), 0o644); err != nil {
		k.t.Fatalf("testenv: %v", err)
	}
}

func (k *Kafka) jvmArgs() []string {
	return []string{
		"-Dlog4j2.configurationFile=" + filepath.Join(k.dir, "log4j2.properties"),
		"-Dkafka.logs.dir=" + k.dir,
		"-Djava.awt.headless=true",
		"-cp", filepath.Join(k.jars, "*"),
	}
}

// format writes the config and formats the log directory as a standalone controller.
func (k *Kafka) format() {
	k.t.Helper()
	k.writeConfig()
	// A cluster id is 16 random bytes in URL-safe base64, as StorageTool random-uuid prints.
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		k.t.Fatalf("testenv: random: %v", err)
	}
	args := append(k.jvmArgs(), "kafka.tools.StorageTool", "format", "--standalone",
		// Joined to its flag: an id that starts with "-" would otherwise read as an option.
		"--cluster-id="+base64.RawURLEncoding.EncodeToString(id), "-c", k.configPath())
	if out, err := exec.Command(k.java, args...).CombinedOutput(); err != nil {
		k.t.Fatalf("testenv: format private Kafka storage in %s: %v\n%s", k.logDir(), err, out)
	}
}

// Start starts the broker (again) on the same ports and log directory and waits until it
// answers. Starting a running broker is a no-op.
func (k *Kafka) Start() {
	k.t.Helper()
	if err := k.start(); err != nil {
		k.t.Fatalf("testenv: %v", err)
	}
}

func (k *Kafka) start() error {
	if k.Running() {
		return nil
	}
	logStart := fileSize(k.ServerLog())
	stdout := filepath.Join(k.dir, "stdout.log")
	args := append([]string{"-Xms128m", "-Xmx512m", "-XX:+UseG1GC", "-XX:TieredStopAtLevel=1"},
		k.jvmArgs()...)
	args = append(args, "kafka.Kafka", k.configPath())
	p, err := startProc(stdout, k.java, args...)
	if err != nil {
		return err
	}
	k.p = p
	deadline := time.Now().Add(startDeadline)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := core.PingBroker(ctx, k.Addr())
		cancel()
		if err == nil {
			return nil
		}
		if p.Exited() {
			if logHas(k.ServerLog(), logStart, "Address already in use") {
				return fmt.Errorf("private Kafka on %s: %w", k.Addr(), errPortTaken)
			}
			return fmt.Errorf("private Kafka on %s exited during start-up (%v)\n%s\n%s",
				k.Addr(), p.Err(), tail(k.ServerLog(), 30), tail(stdout, 10))
		}
		if time.Now().After(deadline) {
			k.p.Kill()
			return fmt.Errorf("private Kafka on %s did not answer within %s: %v\n%s",
				k.Addr(), startDeadline, err, tail(k.ServerLog(), 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop shuts the broker down gracefully (SIGTERM: controlled shutdown) and waits for it
// to exit; it kills it if it has not exited after a minute.
func (k *Kafka) Stop() {
	k.t.Helper()
	if k.p == nil {
		return
	}
	if !stopProc(k.p) {
		k.t.Logf("testenv: private Kafka on %s did not stop within %s and was killed", k.Addr(), stopDeadline)
	}
}

// Kill kills the broker with SIGKILL (a crash) and waits for it to exit.
func (k *Kafka) Kill() {
	if k.p != nil {
		k.p.Kill()
	}
}

// String names the instance in messages.
func (k *Kafka) String() string { return "private Kafka " + k.Addr() }
