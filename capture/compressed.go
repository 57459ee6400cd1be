package capture

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"maps"
	"time"

	"github.com/go-mysql-org/go-mysql/replication"
	"go.uber.org/zap"

	"github.com/cleave-dev/cleave/event"
)

// Design note: versions of compressed row changes.
//
// A version is the position of a row change's rows event plus the row's index in it, and
// stays below the next event's position because every row of a plain rows event takes at
// least a byte of it. Compressed events break that, two ways:
//
//   - A MySQL session with binlog_transaction_compression=ON writes its transaction as one
//     Transaction_payload event after the GTID event: the transaction's own events (BEGIN,
//     table maps, rows events, XID), zstd-compressed together, with no place in the binlog
//     file of their own. Every row change inside takes the payload event's start as its
//     position, and as its row index its place among all the row changes of the payload,
//     of every table, in binlog order (0, 1, 2, ...; the delete and create of a primary
//     key change share one, as in a rows event). The transaction's boundary is the end of
//     the payload event, so a checkpoint is never inside it.
//   - MariaDB with log_bin_compress writes rows events whose rows are zlib-compressed; a
//     row keeps its place in its event.
//
// Either way, a compressed span of S bytes (the payload, the rows event) leaves room for S
// versions, and rows that compress to less than a byte each (the same rows changed over
// and over: a counter bumped 100,000 times in one statement takes about 1.1 bytes per
// change in a payload, a flag toggled back and forth far less) can outnumber them. Such a
// span is emitted net: one event per row for the span, from the row's image before it to
// its image after it, all at the span's start (row index 0). No one outside the
// transaction ever saw the states in between, and each row still gets one version between
// the events before and after the span. The choice depends on the binlog alone (the row
// count of every table in the span against its size), so a restart re-emits each change
// with the version it had.
//
// go-mysql decompresses a payload and decodes every event in it, but with a parser of its
// own that ignores the syncer's settings (TIMESTAMP values come out in the process's local
// zone). Capture parses the inner events again, from the bytes go-mysql kept, with a
// parser set up like the syncer's (syncerSettings), so that a row reads the same inside a
// payload as outside. go-mysql's own decode still gives the row counts of every table.

// payloadParser returns the parser for events inside Transaction_payload events of the
// binlog file described by the last format description read. Inner events carry no
// checksum, so the parser is given a copy of that description which says so.
func (r *reader) payloadParser() (*replication.BinlogParser, error) {
	if r.inner != nil && r.innerFor == r.fde {
		return r.inner, nil
	}
	if r.fde == nil {
		return nil, fmt.Errorf("a compressed transaction before any format description event")
	}
	p := replication.NewBinlogParser()
	syncerSettings(p, r.c.syncerConfig(r.src))
	if _, err := p.Parse(uncheckedDescription(r.fde)); err != nil {
		return nil, fmt.Errorf("prepare the parser of compressed transactions: %w", err)
	}
	r.inner, r.innerFor = p, r.fde
	return p, nil
}

// syncerSettings gives p the decoding settings of the syncer configured by cfg.
func syncerSettings(p *replication.BinlogParser, cfg replication.BinlogSyncerConfig) {
	p.SetFlavor(cfg.Flavor)
	p.SetParseTime(cfg.ParseTime)
	p.SetTimestampStringLocation(cfg.TimestampStringLocation)
	p.SetUseDecimal(cfg.UseDecimal)
	p.SetUseFloatWithTrailingZero(cfg.UseFloatWithTrailingZero)
	p.SetRowsEventDecodeFunc(cfg.RowsEventDecodeFunc)
	p.SetTableMapOptionalMetaDecodeFunc(cfg.TableMapOptionalMetaDecodeFunc)
}

// uncheckedDescription encodes fde as a format description event that declares events
// without checksums (BINLOG_CHECKSUM_ALG_OFF), as the events inside a payload are.
func uncheckedDescription(fde *replication.FormatDescriptionEvent) []byte {
	body := make([]byte, 0, 2+50+4+1+len(fde.EventTypeHeaderLengths)+5)
	body = binary.LittleEndian.AppendUint16(body, fde.Version)
	var version [50]byte
	copy(version[:], fde.ServerVersion)
	body = append(body, version[:]...)
	body = binary.LittleEndian.AppendUint32(body, fde.CreateTimestamp)
	body = append(body, byte(replication.EventHeaderSize))
	body = append(body, fde.EventTypeHeaderLengths...)
	body = append(body, byte(replication.BINLOG_CHECKSUM_ALG_OFF), 0, 0, 0, 0)
	h := make([]byte, replication.EventHeaderSize, replication.EventHeaderSize+len(body))
	h[4] = byte(replication.FORMAT_DESCRIPTION_EVENT)
	binary.LittleEndian.PutUint32(h[9:], uint32(replication.EventHeaderSize+len(body)))
	return append(h, body...)
}

// rowChanges is the number of row changes in a rows event.
func rowChanges(e *replication.RowsEvent, t replication.EventType) int {
	if e.Type() == replication.EnumRowsEventTypeUpdate || t == replication.PARTIAL_UPDATE_ROWS_EVENT {
		return len(e.Rows) / 2
	}
	return len(e.Rows)
}

// payload handles a compressed transaction: its events one by one, each with the payload
// event's place in the binlog (so the XID inside ends the transaction at the payload's
// end), its row changes numbered through the payload (see the design note).
func (r *reader) payload(h *replication.EventHeader, e *replication.TransactionPayloadEvent) error {
	p, err := r.payloadParser()
	if err != nil {
		return fatal(fmt.Errorf("compressed transaction at %s: %w", r.pos(h), err))
	}
	changes := 0
	for _, ie := range e.Events {
		if re, ok := ie.Event.(*replication.RowsEvent); ok {
			changes += rowChanges(re, ie.Header.EventType)
		}
	}
	r.rowBase = 0
	if changes >= int(h.EventSize) {
		r.emitNet(h, changes)
	}
	defer func() { r.rowBase, r.net = 0, nil }()
	for _, ie := range e.Events {
		ev, err := p.Parse(ie.RawData)
		if err != nil {
			return fatal(fmt.Errorf("decode an event of the compressed transaction at %s: %w", r.pos(h), err))
		}
		ih := *ev.Header
		ih.LogPos, ih.EventSize = h.LogPos, h.EventSize
		ev.Header = &ih
		switch x := ev.Event.(type) {
		case *replication.XIDEvent:
			// The net changes go before the boundary the commit is.
			if err := r.flushNet(&ih); err != nil {
				return err
			}
		case *replication.QueryEvent:
			if isCommit(x.Query) {
				if err := r.flushNet(&ih); err != nil {
					return err
				}
			}
		}
		if err := r.handle(ev); err != nil {
			return err
		}
		if orig, ok := ie.Event.(*replication.RowsEvent); ok {
			r.rowBase += rowChanges(orig, ie.Header.EventType)
		}
	}
	return r.flushNet(h)
}

// emitNet makes the reader collect the row changes of the compressed span with header h
// and emit them net (see the design note).
func (r *reader) emitNet(h *replication.EventHeader, changes int) {
	r.net = newNetChanges()
	r.c.log.Info("compressed binlog event with more row changes than bytes: its changes are emitted net, one per row",
		zap.String("position", r.pos(h)), zap.Int("row_changes", changes), zap.Uint32("event_bytes", h.EventSize))
}

// netChanges collects the row changes of a compressed transaction emitted net: per row
// (table and key), its image before the first change and after the last, in the order
// rows were first changed.
type netChanges struct {
	byKey map[string]*netChange
	order []*netChange
}

type netChange struct {
	d             *tableDef
	before, after *rowImage // nil: the row did not exist before / does not after
}

func newNetChanges() *netChanges { return &netChanges{byKey: map[string]*netChange{}} }

// add records one change of the row with message key key: before is its image before the
// change (nil for an insert), after its image after (nil for a delete).
func (n *netChanges) add(d *tableDef, key []byte, before, after *rowImage) {
	id := d.name + "\x00" + string(key)
	c, ok := n.byKey[id]
	if !ok {
		c = &netChange{d: d, before: before.clone()}
		n.byKey[id] = c
		n.order = append(n.order, c)
	}
	c.after = after.clone()
}

// clone copies an image that the reader will overwrite; nil stays nil. The types of its
// JSON columns are copied too: reset empties the map but leaves the JSONTypes in it alone,
// since each document's types are a map of their own.
func (img *rowImage) clone() *rowImage {
	if img == nil {
		return nil
	}
	return &rowImage{Image: img.Image.Clone(), set: true, types: maps.Clone(img.types)}
}

// flushNet emits the net changes of the compressed transaction being read, if it is
// emitted net, at the position of the payload event with header h and row index 0.
func (r *reader) flushNet(h *replication.EventHeader) error {
	n := r.net
	if n == nil || len(n.order) == 0 {
		return nil
	}
	r.net = newNetChanges()
	start := uint64(h.LogPos - h.EventSize)
	version, err := event.NewVersion(r.file, start, 0)
	if err != nil {
		return fatal(err)
	}
	now := time.Now().UnixMilli()
	for _, c := range n.order {
		var op event.Op
		switch {
		case c.before == nil && c.after == nil:
			continue // created and deleted inside the transaction
		case c.before == nil:
			op = event.OpCreate
		case c.after == nil:
			op = event.OpDelete
		default:
			op = event.OpUpdate
		}
		src := r.source(h, c.d.info, start, 0)
		if err := r.emitRow(c.d, op, c.before, c.after, now, &src, version); err != nil {
			return err
		}
	}
	return nil
}

// isCommit reports whether a query event ends a transaction, as reader.query sees it.
func isCommit(q []byte) bool {
	q = bytes.TrimSpace(q)
	return bytes.EqualFold(q, []byte("COMMIT")) || bytes.EqualFold(q, []byte("ROLLBACK"))
}
