package mysqlx

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// VersionAtLeast compares a server version string's major.minor ("10.11.19-MariaDB",
// "8.4.3") with major.minor. An unreadable version is never at least anything.
func VersionAtLeast(version string, major, minor int) bool {
	parts := strings.SplitN(version, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(strings.TrimFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

// ErrNoBinlog: the server reports no binlog position (log_bin is off).
var ErrNoBinlog = errors.New("the source has no binary log")

// Querier is what BinlogStatus needs of a pool or a connection.
type Querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// BinlogStatus runs stmt (Flavor.BinlogStatusStatement) and returns the binlog file and position
// it reports, with every column of its row (MySQL's Executed_Gtid_Set is the fifth).
func BinlogStatus(ctx context.Context, q Querier, stmt string) (file string, pos uint64, row []sql.NullString, err error) {
	rows, err := q.QueryContext(ctx, stmt)
	if err != nil {
		return "", 0, nil, fmt.Errorf("read the source's binlog position (%s): %w", stmt, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return "", 0, nil, fmt.Errorf("read the source's binlog position: %w", err)
	}
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return "", 0, nil, fmt.Errorf("read the source's binlog position: %w", err)
		}
		return "", 0, nil, fmt.Errorf("%w: %s returned nothing", ErrNoBinlog, stmt)
	}
	row = make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range row {
		ptrs[i] = &row[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return "", 0, nil, fmt.Errorf("read the source's binlog position: %w", err)
	}
	if len(row) < 2 {
		return "", 0, nil, fmt.Errorf("read the source's binlog position: %s returned %d columns, want file and position", stmt, len(row))
	}
	if pos, err = strconv.ParseUint(row[1].String, 10, 64); err != nil {
		return "", 0, nil, fmt.Errorf("read the source's binlog position: %q is not an offset", row[1].String)
	}
	return row[0].String, pos, row, rows.Err()
}

// mySQLBinlogPosition reads MySQL's binlog end with its executed GTID set, which the
// status row's fifth column (Executed_Gtid_Set) gives as of that very position; MySQL
// breaks the set across lines when it is long.
func mySQLBinlogPosition(ctx context.Context, q Querier, stmt string) (string, uint64, string, error) {
	file, pos, row, err := BinlogStatus(ctx, q, stmt)
	if err != nil {
		return "", 0, "", err
	}
	gtid := ""
	if len(row) >= 5 {
		gtid = strings.ReplaceAll(row[4].String, "\n", "")
	}
	return file, pos, gtid, nil
}

// mariaDBBinlogPosition reads MariaDB's binlog end and the GTID state at it.
func mariaDBBinlogPosition(ctx context.Context, q Querier, stmt string) (string, uint64, string, error) {
	file, pos, _, err := BinlogStatus(ctx, q, stmt)
	if err != nil {
		return "", 0, "", err
	}
	gtid, err := mariaDBGTIDAt(ctx, q, file, pos)
	return file, pos, gtid, err
}

// mariaDBGTIDAt is MariaDB's GTID position at a binlog file and offset.
func mariaDBGTIDAt(ctx context.Context, q Querier, file string, pos uint64) (string, error) {
	rows, err := q.QueryContext(ctx, "SELECT BINLOG_GTID_POS(?, ?)", file, pos)
	if err != nil {
		return "", fmt.Errorf("read the GTID position at %s:%d: %w", file, pos, err)
	}
	defer rows.Close()
	var g sql.NullString
	if rows.Next() {
		if err := rows.Scan(&g); err != nil {
			return "", fmt.Errorf("read the GTID position at %s:%d: %w", file, pos, err)
		}
	}
	if err := rows.Err(); err != nil {
		return "", fmt.Errorf("read the GTID position at %s:%d: %w", file, pos, err)
	}
	return g.String, nil
}

// queryString runs a query that returns one text value (NULL reads as "").
func queryString(ctx context.Context, q Querier, query string) (string, error) {
	rows, err := q.QueryContext(ctx, query)
	if err != nil {
		return "", fmt.Errorf("%s: %w", query, err)
	}
	defer rows.Close()
	var v sql.NullString
	if rows.Next() {
		if err := rows.Scan(&v); err != nil {
			return "", fmt.Errorf("%s: %w", query, err)
		}
	}
	if err := rows.Err(); err != nil {
		return "", fmt.Errorf("%s: %w", query, err)
	}
	return v.String, nil
}
