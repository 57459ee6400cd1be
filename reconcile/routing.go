package reconcile

import (
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/route"
	"github.com/cleave-dev/cleave/schema"
)

// keyKind is how routing compares a table's shard key: as integers for integer columns,
// as bytes otherwise (the rule the sinks use).
func keyKind(c *schema.Column) route.KeyKind {
	if c != nil && c.Kind.Integer() {
		return route.KeyInt
	}
	return route.KeyBytes
}

// keyColumn is the shard key column quoted for route.TableSpec.MemberSQL, "" when the table
// has none (broadcast, pin).
func keyColumn(c *schema.Column) string {
	if c == nil {
		return ""
	}
	return mysqlx.QuoteIdent(c.Name)
}
