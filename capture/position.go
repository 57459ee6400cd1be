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
}

// newGTIDState parses the stored state of flavor ("mariadb" or "mysql"). An empty string is
// a source without GTIDs (or a MySQL source with gtid_mode=OFF); its state stays empty.
func newGTIDState(flavor, s string) (gtidState, error) {
	if flavor == mysql.MariaDBFlavor {
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
