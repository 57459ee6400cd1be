package capture

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/google/uuid"

	"github.com/cleave-dev/cleave/event"
)

// Position is a transaction boundary in the source's binlog: the file and the offset just
// after the event that committed the last transaction, and the source's GTID state at that
// point when it has GTIDs. Capture only ever stores and resumes from such boundaries, so a
// restart re-reads whole transactions and re-emits their events with identical versions.
type Position struct {
	File string `json:"file"`
	Pos  uint64 `json:"pos"`
	// GTID is the GTID state at the boundary: MariaDB's per-domain list ("0-1-42,1-7-3")
	// or MySQL's executed set ("uuid:1-42"). Empty when the source has no GTIDs.
	GTID string `json:"gtid,omitempty"`
}

func (p Position) String() string {
	if p.GTID == "" {
		return fmt.Sprintf("%s:%d", p.File, p.Pos)
	}
	return fmt.Sprintf("%s:%d (gtid %s)", p.File, p.Pos, p.GTID)
}

// coord is a position as one comparable number, the same layout as event.Version with row 0.
func (p Position) coord() (uint64, error) {
	v, err := event.NewVersion(p.File, p.Pos, 0)
	return uint64(v), err
}

// Before reports whether p lies strictly before q in the binlog.
func (p Position) Before(q Position) bool {
	a, errA := p.coord()
	b, errB := q.coord()
	if errA != nil || errB != nil {
		return p.File < q.File || (p.File == q.File && p.Pos < q.Pos)
	}
	return a < b
}

// gtidState follows the source's GTID state through the stream, so that every stored
// boundary carries the GTID state that belongs to it.
type gtidState interface {
	// begin records the GTID of a transaction that starts and returns it as text, for the
	// source.gtid field of its events. The state includes it from now on: a boundary is
	// only taken after the transaction's commit.
	begin(ev any) string
	String() string
	// missingFrom says which GTIDs of this state, a checkpoint's, are missing from
	// executed, the source's whole binlog history as it reports it: "" when it has them
	// all. A source whose binlog was reset numbers its transactions from 1 again, so a
	// checkpoint of its old history has seen GTIDs the new one lacks.
	missingFrom(executed string) (string, error)
}

// newGTIDState parses a GTID state in the replication dialect named dialect. An empty
// string is a source without GTIDs (or a MySQL source with gtid_mode=OFF); its state
// stays empty.
//
// The dialect, not a mysqlx.Flavor, decides the form: a GTID state is what go-mysql's
// replication protocol of that dialect reads and sends (MariaDB's per-domain position,
// MySQL's executed set), it is stored in checkpoints with the dialect's name
// (source.flavor, which is go-mysql's BinlogSyncerConfig.Flavor), and it must parse the
// same whatever version of the product the checkpoint is read against. This is the one
// place that tells the two forms apart; everything else asks the gtidState.
func newGTIDState(dialect, s string) (gtidState, error) {
	if dialect == mysql.MariaDBFlavor {
		return parseMariaDBState(s)
	}
	set, err := mysql.ParseMysqlGTIDSet(s)
	if err != nil {
		return nil, fmt.Errorf("parse MySQL GTID set %q: %w", s, err)
	}
	return &mysqlState{set: set.(*mysql.MysqlGTIDSet)}, nil
}

// mariadbState is MariaDB's GTID position: the last GTID of each replication domain. It is
// kept per domain (not per domain and server as go-mysql's MariadbGTIDSet does) because
// that is what BINLOG_GTID_POS returns and @slave_connect_state accepts.
type mariadbState struct {
	domains map[uint32]mysql.MariadbGTID
}

func parseMariaDBState(s string) (*mariadbState, error) {
	st := &mariadbState{domains: map[uint32]mysql.MariadbGTID{}}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		g, err := mysql.ParseMariadbGTID(part)
		if err != nil {
			return nil, fmt.Errorf("parse MariaDB GTID position %q: %w", s, err)
		}
		st.domains[g.DomainID] = *g
	}
	return st, nil
}

func (s *mariadbState) begin(ev any) string {
	g, ok := ev.(*mysql.MariadbGTID)
	if !ok {
		return ""
	}
	s.domains[g.DomainID] = *g
	return strconv.FormatUint(uint64(g.DomainID), 10) + "-" + strconv.FormatUint(uint64(g.ServerID), 10) + "-" + strconv.FormatUint(g.SequenceNumber, 10)
}

func (s *mariadbState) String() string {
	ids := make([]uint32, 0, len(s.domains))
	for id := range s.domains {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	parts := make([]string, len(ids))
	for i, id := range ids {
		g := s.domains[id]
		parts[i] = fmt.Sprintf("%d-%d-%d", g.DomainID, g.ServerID, g.SequenceNumber)
	}
	return strings.Join(parts, ",")
}

func (s *mariadbState) missingFrom(executed string) (string, error) {
	have, err := parseMariaDBState(executed)
	if err != nil {
		return "", fmt.Errorf("%w: compare the checkpoint's GTID position %q with the source's %q: %v", ErrSource, s, executed, err)
	}
	for d, g := range s.domains {
		if h, ok := have.domains[d]; !ok || h.SequenceNumber < g.SequenceNumber {
			return fmt.Sprintf("the checkpoint has seen GTID %d-%d-%d, the source's binlog goes up to %q", g.DomainID, g.ServerID, g.SequenceNumber, executed), nil
		}
	}
	return "", nil
}

// sameMariaDBState compares two MariaDB GTID positions as sets of per-domain GTIDs.
func sameMariaDBState(a, b string) bool {
	sa, errA := parseMariaDBState(a)
	sb, errB := parseMariaDBState(b)
	return errA == nil && errB == nil && sa.String() == sb.String()
}

// mysqlState is MySQL's executed GTID set.
type mysqlState struct {
	set *mysql.MysqlGTIDSet
}

// mysqlGTID is the GTID of one MySQL transaction.
type mysqlGTID struct {
	sid []byte
	gno int64
	tag mysql.Tag // empty for an untagged GTID
}

func (s *mysqlState) begin(ev any) string {
	g, ok := ev.(mysqlGTID)
	if !ok {
		return ""
	}
	u, err := uuid.FromBytes(g.sid)
	if err != nil || u == uuid.Nil {
		// An anonymous transaction (gtid_mode=OFF) has no GTID.
		return ""
	}
	s.set.AddGTIDWithTag(u, g.tag, g.gno)
	if tag := g.tag.String(); tag != "" {
		return u.String() + ":" + tag + ":" + strconv.FormatInt(g.gno, 10)
	}
	return u.String() + ":" + strconv.FormatInt(g.gno, 10)
}

func (s *mysqlState) String() string { return s.set.String() }

func (s *mysqlState) missingFrom(executed string) (string, error) {
	have, err := mysql.ParseMysqlGTIDSet(executed)
	if err != nil {
		return "", fmt.Errorf("read the source's executed GTIDs %q: %w", executed, err)
	}
	if !have.Contain(s.set) {
		return fmt.Sprintf("the checkpoint has seen GTIDs %s, the source has executed only %s", s.set, orUnset(executed)), nil
	}
	return "", nil
}
