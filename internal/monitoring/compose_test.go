package monitoring

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/cleave-dev/cleave/config"
)

// The compose file cannot run here (no container engine), so these tests check what can
// be checked without one: every file it mounts exists, and each program's configuration
// is accepted by that program's own checker.

var composeDir = filepath.Join("..", "..", "configs", "compose")

func TestComposeMountsExist(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(composeDir, "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]struct {
			Volumes []string `yaml:"volumes"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	for _, name := range []string{"source", "shard0", "shard1", "kafka", "cleave", "prometheus", "alertmanager", "grafana"} {
		if _, ok := c.Services[name]; !ok {
			t.Errorf("compose.yaml has no service %s", name)
		}
	}
	for name, s := range c.Services {
		for _, v := range s.Volumes {
			host, _, _ := strings.Cut(v, ":")
			if !strings.HasPrefix(host, ".") {
				continue // a named volume
			}
			if _, err := os.Stat(filepath.Join(composeDir, host)); err != nil {
				t.Errorf("service %s mounts %s, which does not exist: %v", name, host, err)
			}
		}
	}
}

func TestComposeCleaveConfigIsValid(t *testing.T) {
	cfg, err := config.Load(filepath.Join(composeDir, "cleave.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Source.Flavor != "mysql" {
		t.Errorf("source.flavor = %s, want mysql (the compose source is MySQL 8.4)", cfg.Source.Flavor)
	}
}

func TestComposePrometheusConfigIsValid(t *testing.T) {
	promtool := requireProgram(t, "promtool", "prometheus")
	// Laid out as the container sees it: the rules next to the config.
	dir := t.TempDir()
	copyFile(t, filepath.Join(composeDir, "prometheus.yml"), filepath.Join(dir, "prometheus.yml"))
	copyFile(t, rulesPath, filepath.Join(dir, "alerts.yml"))
	if out, err := exec.Command(promtool, "check", "config", filepath.Join(dir, "prometheus.yml")).CombinedOutput(); err != nil {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}
}

func TestComposeAlertmanagerConfigIsValid(t *testing.T) {
	amtool := requireProgram(t, "amtool", "prometheus-alertmanager")
	if out, err := exec.Command(amtool, "check-config", filepath.Join(composeDir, "alertmanager.yml")).CombinedOutput(); err != nil {
		t.Fatalf("amtool check-config: %v\n%s", err, out)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
