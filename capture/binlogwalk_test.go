package capture

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/go-sql-driver/mysql"
	"go.uber.org/zap"
)

// walkBinlog reads the binlog of the server at dsn from from until an event ends at or past
// to, with go-mysql alone (configure adjusts its syncer: capture's row decoder, caches), and
// calls fn with each event and the file it is in; rotate events are followed, not passed on.
// The tests read the binlog this way to know, independently of capture, what it holds.
func walkBinlog(tb testing.TB, flavor, dsn string, from, to Position, timeout time.Duration,
	configure func(*replication.BinlogSyncerConfig), fn func(file string, ev *replication.BinlogEvent)) {
	tb.Helper()
	dc, err := mysql.ParseDSN(dsn)
	if err != nil {
		tb.Fatal(err)
	}
	host, portText, _ := strings.Cut(dc.Addr, ":")
	port, err := strconv.Atoi(portText)
	if err != nil {
		tb.Fatalf("port of %s: %v", dc.Addr, err)
	}
	cfg := replication.BinlogSyncerConfig{
		ServerID: serverID(), Flavor: flavor, Host: host, Port: uint16(port), User: dc.User, Password: dc.Passwd,
		TimestampStringLocation: time.UTC, Logger: newSlogger(zap.NewNop()),
	}
	if configure != nil {
		configure(&cfg)
	}
	syncer := replication.NewBinlogSyncer(cfg)
	defer syncer.Close()
	st, err := syncer.StartSync(gomysql.Position{Name: from.File, Pos: uint32(from.Pos)})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	file := from.File
	for {
		ev, err := st.GetEvent(ctx)
		if err != nil {
			tb.Fatalf("read binlog from %s to %s: %v", from, to, err)
		}
		if r, ok := ev.Event.(*replication.RotateEvent); ok {
			// Its header position belongs to the file it closes.
			file = string(r.NextLogName)
			continue
		}
		fn(file, ev)
		if ev.Header.LogPos > 0 && !(Position{File: file, Pos: uint64(ev.Header.LogPos)}).Before(to) {
			return
		}
	}
}
