package mysqlx

import (
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/go-sql-driver/mysql"
)

func TestRetryableClassifiesByErrorNumberAndLostSessions(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"deadlock", &mysql.MySQLError{Number: ErLockDeadlock}, true},
		{"lock wait timeout", &mysql.MySQLError{Number: ErLockWaitTimeout}, true},
		{"server shutting down", &mysql.MySQLError{Number: ErServerShutdown}, true},
		{"read only", &mysql.MySQLError{Number: ErOptionPreventsStmt}, true},
		{"session broke before the statement was sent", fmt.Errorf("delete: %w", driver.ErrBadConn), true},
		{"session closed by the server", io.EOF, true},
		{"truncated packet", io.ErrUnexpectedEOF, true},
		{"invalid connection", mysql.ErrInvalidConn, true},
		{"conn done", sql.ErrConnDone, true},
		{"data too long", &mysql.MySQLError{Number: ErDataTooLong}, false},
		{"no such table", &mysql.MySQLError{Number: ErNoSuchTable}, false},
		{"access denied", &mysql.MySQLError{Number: ErAccessDenied}, false},
		{"other error", errors.New("boom"), false},
		{"nil", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Retryable(tc.err); got != tc.want {
				t.Fatalf("Retryable(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

func TestRejectedKnowsEachProductsRefusalOfARow(t *testing.T) {
	for _, tc := range []struct {
		name string
		num  uint16
		want bool
	}{
		{"MariaDB CHECK constraint", 4025, true},
		{"MySQL CHECK constraint", 3819, true},
		{"invalid JSON", 3140, true},
		{"value too long", ErDataTooLong, true},
		{"NULL into NOT NULL", ErBadNull, true},
		{"deadlock", ErLockDeadlock, false},
		{"no such table", ErNoSuchTable, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Rejected(&mysql.MySQLError{Number: tc.num}); got != tc.want {
				t.Fatalf("Rejected(%d) = %v, want %v", tc.num, got, tc.want)
			}
		})
	}
}
