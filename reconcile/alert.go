package reconcile

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	neturl "net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"
)

// AlertName is the alertname label of drift alerts.
const AlertName = "CleaveReconcileDrift"

// WebhookMessage is the body POSTed to reconcile.webhook_url: the payload Alertmanager
// sends to its webhook receivers (version 4), so that anything that consumes Alertmanager
// webhooks consumes cleave's. One alert per table and shard with drift; a run that finds
// drift sends them firing, the first complete run after it that finds none sends them
// resolved.
type WebhookMessage struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   int               `json:"truncatedAlerts"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []Alert           `json:"alerts"`
}

// Alert is one alert of a WebhookMessage.
type Alert struct {
	Status       string            `json:"status"` // firing or resolved
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"` // zero while firing
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

// alertStateVersion is the format of the alert state file. Version 1 (files without a
// "version" field) has the same layout, and holds no hash: it is read as is. A newer
// format is refused.
const alertStateVersion = 2

// alertState remembers the alerts that fire, with when they started, across runs of one
// process and, through its file, across one-shot runs.
type alertState struct {
	path    string
	Version int                  `json:"version"`
	Firing  map[string]time.Time `json:"firing"` // "table shard" -> startsAt
}

// newAlertState reads the alert state file at path (none yet: nothing fires). A file it
// cannot read is an error: starting afresh would forget the firing alerts, and the clean
// run that follows would never resolve them.
func newAlertState(path string) (*alertState, error) {
	a := &alertState{path: path, Version: alertStateVersion, Firing: map[string]time.Time{}}
	if path == "" {
		return a, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return a, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read alert state file: %w", err)
	}
	var read alertState
	if err := json.Unmarshal(data, &read); err != nil {
		return nil, fmt.Errorf("alert state file %s is damaged (%v): remove it (alerts firing now are then sent again as new)", path, err)
	}
	if read.Version > alertStateVersion {
		return nil, fmt.Errorf("alert state file %s was written by a newer cleave (format %d; this one reads up to %d): use that cleave, or remove the file", path, read.Version, alertStateVersion)
	}
	if read.Firing != nil {
		a.Firing = read.Firing
	}
	return a, nil
}

func (a *alertState) save() error {
	if a.path == "" {
		return nil
	}
	data, err := json.Marshal(a)
	if err != nil {
		return err
	}
	tmp := a.path + ".tmp"
	if err := os.MkdirAll(filepath.Dir(a.path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, a.path)
}

// alertsFor computes the message for a finished run, updating the state; nil when there
// is nothing to say (no drift now and none firing before). A table alerts only when its
// drifted rows, over every shard and kind, are more than above(table) (its
// drift_alert_above); a table at or below that resolves like one without drift.
func (a *alertState) alertsFor(rep *Report, now time.Time, above func(table string) int) *WebhookMessage {
	current := map[string]map[Kind]int{}
	checked := map[string]bool{}
	for _, t := range rep.Tables {
		total := 0
		for _, s := range t.Shards {
			for _, n := range s.Drift {
				total += n
			}
		}
		quiet := total <= above(t.Table)
		for _, s := range t.Shards {
			id := t.Table + " " + s.Shard
			if t.Error == "" {
				checked[id] = true
			}
			for k, n := range s.Drift {
				if n > 0 && !quiet {
					if current[id] == nil {
						current[id] = map[Kind]int{}
					}
					current[id][k] = n
				}
			}
		}
	}
	var alerts []Alert
	ids := make([]string, 0, len(current))
	for id := range current {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		start, ok := a.Firing[id]
		if !ok {
			start = now
			a.Firing[id] = start
		}
		alerts = append(alerts, makeAlert(id, "firing", current[id], start, time.Time{}))
	}
	var gone []string
	for id := range a.Firing {
		// Only a check that covered the table resolves its alert.
		if _, firing := current[id]; !firing && checked[id] {
			gone = append(gone, id)
		}
	}
	sort.Strings(gone)
	for _, id := range gone {
		alerts = append(alerts, makeAlert(id, "resolved", nil, a.Firing[id], now))
		delete(a.Firing, id)
	}
	if len(alerts) == 0 {
		return nil
	}
	status := "resolved"
	if len(current) > 0 {
		status = "firing"
	}
	return &WebhookMessage{
		Version:           "4",
		GroupKey:          `{}:{alertname="` + AlertName + `"}`,
		Status:            status,
		Receiver:          "cleave",
		GroupLabels:       map[string]string{"alertname": AlertName},
		CommonLabels:      map[string]string{"alertname": AlertName},
		CommonAnnotations: map[string]string{},
		Alerts:            alerts,
	}
}

func makeAlert(id, status string, kinds map[Kind]int, start, end time.Time) Alert {
	table, shard, _ := strings.Cut(id, " ")
	var parts []string
	total := 0
	for _, k := range Kinds {
		if kinds[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", k, kinds[k]))
			total += kinds[k]
		}
	}
	ann := map[string]string{}
	if status == "firing" {
		ann["summary"] = fmt.Sprintf("%d rows of %s on shard %s differ from the source", total, table, shard)
		ann["description"] = strings.Join(parts, " ") + "; run cleave reconcile --json to list them and --repair-sql to see the fix"
	} else {
		ann["summary"] = fmt.Sprintf("%s on shard %s matches the source again", table, shard)
	}
	return Alert{
		Status:      status,
		Labels:      map[string]string{"alertname": AlertName, "table": table, "shard": shard, "severity": "critical"},
		Annotations: ann,
		StartsAt:    start.UTC(),
		EndsAt:      end.UTC(),
		Fingerprint: alertFingerprint(table, shard),
	}
}

// alertFingerprint identifies a table and shard's alert across runs and releases: a
// receiver may match a resolved alert to the firing one by it, also when the firing one was
// sent by an older cleave. It is the first 8 bytes of SHA1 over "CleaveReconcileDrift|table|shard",
// the value cleave has always sent (it was once the row hash of those words).
func alertFingerprint(table, shard string) string {
	sum := sha1.Sum([]byte(AlertName + "|" + table + "|" + shard))
	return hex.EncodeToString(sum[:8])
}

// driftAlertAbove is the drift_alert_above of a configured table.
func (c *Checker) driftAlertAbove(table string) int {
	for i := range c.cfg.Tables {
		if c.cfg.Tables[i].Name == table {
			return c.cfg.Tables[i].DriftAlertAbove
		}
	}
	return 0
}

// alert posts the run's webhook message, if any. A failed post is logged, not fatal: the
// report and the metrics still carry the result.
func (c *Checker) alert(ctx context.Context, rep *Report) {
	msg := c.alerts.alertsFor(rep, c.now(), c.driftAlertAbove)
	if err := c.alerts.save(); err != nil {
		c.log.Warn("save alert state", zap.Error(err))
	}
	url := c.cfg.Reconcile.WebhookURL
	if msg == nil || url == "" {
		return
	}
	body, err := json.Marshal(msg)
	if err != nil {
		c.log.Error("encode webhook message", zap.Error(err))
		return
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		c.log.Error("webhook request", zap.Error(err))
		return
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		// The URL may carry a token: keep it out of logs and the report.
		var ue *neturl.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		c.log.Error("post drift alert to webhook", zap.Error(err))
		rep.Notes = append(rep.Notes, "alert webhook failed: "+err.Error())
		return
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		c.log.Error("drift alert webhook refused", zap.Int("status", resp.StatusCode))
		rep.Notes = append(rep.Notes, fmt.Sprintf("alert webhook answered HTTP %d", resp.StatusCode))
	}
}
