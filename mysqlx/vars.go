package mysqlx

import (
	"context"
	"strings"
)

// GlobalVariables reads the named global variables of the server, keyed by lower-case
// name as SHOW GLOBAL VARIABLES gives them; a variable the server does not have is absent.
func GlobalVariables(ctx context.Context, q Querier, names ...string) (map[string]string, error) {
	rows, err := q.QueryContext(ctx, "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('"+strings.Join(names, "','")+"')")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	vars := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, err
		}
		vars[strings.ToLower(k)] = v
	}
	return vars, rows.Err()
}
