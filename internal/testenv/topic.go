package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cleave-dev/cleave/internal/testenv/core"
)

// ReadTopic returns every message topic holds, partition by partition in offset order. It
// fails the test when the topic cannot be read whole within two minutes.
func ReadTopic(t testing.TB, brokers []string, topic string) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out []kafka.Message
	if err := core.ReadTopic(ctx, brokers, topic, func(m kafka.Message) { out = append(out, m) }); err != nil {
		t.Fatal(err)
	}
	return out
}

// DeleteRecords moves the log start of a partition of topic up to offset, as retention
// would, with Kafka's own kafka-delete-records tool (run on the broker's jars): the
// messages below offset are gone for every reader.
func DeleteRecords(t testing.TB, brokers []string, topic string, partition int, offset int64) {
	t.Helper()
	jars, err := kafkaJars()
	if err != nil {
		unavailable(t, "Kafka jars", "scripts/services.sh kafka-jars", err)
		return
	}
	java, err := javaPath()
	if err != nil {
		unavailable(t, "java", "PATH", err)
		return
	}
	spec := fmt.Sprintf(`{"version":1,"partitions":[{"topic":%q,"partition":%d,"offset":%d}]}`, topic, partition, offset)
	path := filepath.Join(t.TempDir(), "delete-records.json")
	if err := os.WriteFile(path, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, java, "-Xmx128m", "-XX:TieredStopAtLevel=1", "-cp", filepath.Join(jars, "*"),
		"org.apache.kafka.tools.DeleteRecordsCommand", "--bootstrap-server", strings.Join(brokers, ","), "--offset-json-file", path)
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "low_watermark: "+strconv.FormatInt(offset, 10)) {
		t.Fatalf("testenv: delete records of %s partition %d below %d: %v\n%s", topic, partition, offset, err, out)
	}
}
