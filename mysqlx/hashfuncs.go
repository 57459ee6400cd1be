package mysqlx

import (
	"context"
	"fmt"
)

// ER_SP_DOES_NOT_EXIST and ER_NO_DB_ERROR: how a server without MD5() answers a call of
// it (it takes the name for a stored function of the current database, or of none).
const (
	erSPDoesNotExist = 1305
	erNoDBError      = 1046
)

// HasMD5 reports whether the server behind q can compute MD5(): always where the flavor
// has it built in, else only when component_classic_hashing is installed, which a call
// finds out. Its MD5() takes strings only: call it on CAST(x AS BINARY).
func HasMD5(ctx context.Context, q Querier, f Flavor) (bool, error) {
	if f.BuiltinMD5() {
		return true, nil
	}
	rows, err := q.QueryContext(ctx, "SELECT MD5(CAST('' AS BINARY))")
	switch n := Number(err); {
	case err == nil:
		rows.Close()
		return true, nil
	case n == erSPDoesNotExist || n == erNoDBError:
		return false, nil
	default:
		return false, fmt.Errorf("find out whether %s has MD5(): %w", f.Product(), err)
	}
}
