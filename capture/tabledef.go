package capture

import (
	"fmt"
	"strings"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/schema"
)

// Design note: the schema a row is decoded with.
//
// Every rows event in the binlog refers to a table-map event written just before it, in
// the same transaction, that describes the table as it was when the row was written. With
// binlog_row_metadata=FULL (checked at start) the table map carries the column names,
// signedness, character sets, ENUM/SET labels and the primary key, so capture builds each
// row's definition from the table map that precedes it and never from the table's current
// definition: rows written before and after an ALTER TABLE decode with their own columns,
// whatever the distance between the reader and the source.
//
// Building a definition costs more than decoding a row, so definitions are cached by table
// id. MySQL and MariaDB give a table a new id whenever its definition changes (and on every
// re-open), and ids restart after a server restart, which always begins a new binlog file:
// the cache is emptied at every new file, and at every DDL on a configured table.
// schemahist records the sequence of definitions per table by position.

// tableDef is how the rows of one configured table decode at one place in the binlog.
type tableDef struct {
	name    string // db.table
	topic   string
	info    *tableInfo
	table   *schema.Table
	tableID uint64
	// colTypes are the binlog column types of the table map, to check a cache hit.
	colTypes []byte
	// pad[i] > 0: a BINARY(pad[i]) column whose trailing 0x00 bytes the binlog dropped.
	pad []int
	// timeFSP[i] > 0: a TIME(fsp) column that go-mysql renders without its zero fraction.
	timeFSP []int
	// fingerprint identifies the definition for the schema history.
	fingerprint string
	// cols writes its rows into messages.
	cols *event.Columns
}

// collations maps the source's collation ids to character set names.
type collations map[uint64]string

// buildDef turns a table map into the definition of its rows. pos names the table map in
// errors.
func buildDef(tm *replication.TableMapEvent, coll collations, topic string, pos string) (*tableDef, error) {
	name := string(tm.Schema) + "." + string(tm.Table)
	n := int(tm.ColumnCount)
	names := tm.ColumnNameString()
	if len(names) != n {
		return nil, fmt.Errorf("table map of %s at %s carries no column names: the source wrote it with binlog_row_metadata=MINIMAL. Set binlog_row_metadata=FULL on the source (SET GLOBAL and in its config); events written before cannot be decoded by name, so start capture after the change (new kafka.topic_prefix) and backfill", name, pos)
	}
	t := &schema.Table{DB: string(tm.Schema), Name: string(tm.Table), Columns: make([]schema.Column, n)}
	d := &tableDef{name: name, topic: topic, table: t, tableID: tm.TableID, colTypes: append([]byte(nil), tm.ColumnType...),
		pad: make([]int, n), timeFSP: make([]int, n)}
	unsigned := tm.UnsignedMap()
	charsets := tm.CollationMap()
	enumSetCharsets := tm.EnumSetCollationMap()
	enums := tm.EnumStrValueMap()
	sets := tm.SetStrValueMap()
	var fp strings.Builder
	fp.WriteString(name)
	for i := 0; i < n; i++ {
		c := &t.Columns[i]
		c.Name = names[i]
		if avail, nullable := tm.Nullable(i); avail {
			c.Nullable = nullable
		}
		if err := describeColumn(c, d, i, tm.ColumnType[i], tm.ColumnMeta[i], unsigned[i]); err != nil {
			return nil, fmt.Errorf("%s column %s at %s: %w", name, c.Name, pos, err)
		}
		switch c.Kind {
		case schema.KindString, schema.KindBinary:
			id, ok := charsets[i]
			if !ok {
				return nil, fmt.Errorf("%s column %s at %s: the table map carries no character set: set binlog_row_metadata=FULL on the source", name, c.Name, pos)
			}
			cs, err := coll.charset(id)
			if err != nil {
				return nil, fmt.Errorf("%s column %s at %s: %w", name, c.Name, pos, err)
			}
			c.Charset = cs
			if cs == "binary" {
				c.Kind = schema.KindBinary
				c.DataType = binaryName(c.DataType)
			} else {
				d.pad[i] = 0 // CHAR pads with spaces, which MySQL strips on read as well
			}
			// Check now that the values will be readable, instead of at the first row.
			if _, err := event.Encode(c, ""); err != nil && c.Kind == schema.KindString {
				return nil, fmt.Errorf("%s at %s: %w", name, pos, err)
			}
		case schema.KindEnum, schema.KindSet:
			labels := enums[i]
			if c.Kind == schema.KindSet {
				labels = sets[i]
			}
			if labels == nil {
				return nil, fmt.Errorf("%s column %s at %s: the table map carries no %s labels: set binlog_row_metadata=FULL on the source", name, c.Name, pos, c.DataType)
			}
			cs := "utf8mb4"
			if id, ok := enumSetCharsets[i]; ok {
				var err error
				if cs, err = coll.charset(id); err != nil {
					return nil, fmt.Errorf("%s column %s at %s: %w", name, c.Name, pos, err)
				}
			}
			c.Charset = cs
			c.Elements = make([]string, len(labels))
			for j, l := range labels {
				// Labels are in the column's character set, as string values are.
				v, err := event.Encode(&schema.Column{Name: c.Name, Kind: schema.KindString, Charset: cs, ColumnType: c.ColumnType}, l)
				if err != nil {
					return nil, fmt.Errorf("%s at %s: %w", name, pos, err)
				}
				c.Elements[j] = v.(string)
			}
		}
		if c.ColumnType == "" {
			c.ColumnType = c.DataType
		}
		fmt.Fprintf(&fp, "|%s %s %s %s %q", c.Name, c.Kind, c.ColumnType, c.Charset, c.Elements)
	}
	for _, k := range tm.PrimaryKey {
		if int(k) >= n {
			return nil, fmt.Errorf("%s at %s: primary key column index %d beyond its %d columns", name, pos, k, n)
		}
		t.PK = append(t.PK, int(k))
	}
	if len(t.PK) == 0 {
		return nil, fmt.Errorf("%s has no primary key in its table map at %s: cleave keys every change event by it; add a primary key to the table (and backfill it) or remove it from tables", name, pos)
	}
	fmt.Fprintf(&fp, "|pk%v", t.PK)
	d.fingerprint = fp.String()
	d.cols = event.NewColumns(names, t.PK)
	return d, nil
}

func binaryName(dataType string) string {
	switch dataType {
	case "char":
		return "binary"
	case "varchar":
		return "varbinary"
	case "tinytext":
		return "tinyblob"
	case "text":
		return "blob"
	case "mediumtext":
		return "mediumblob"
	case "longtext":
		return "longblob"
	}
	return dataType
}

// describeColumn sets the Kind, DataType, ColumnType and FSP of column i from its binlog
// type and metadata. String types start as text; buildDef decides text or binary by their
// character set.
func describeColumn(c *schema.Column, d *tableDef, i int, typ byte, meta uint16, unsigned bool) error {
	integer := func(name string) {
		c.DataType = name
		c.ColumnType = name
		c.Kind = schema.KindInt
		if unsigned {
			c.Kind = schema.KindUint
			c.ColumnType = name + " unsigned"
		}
	}
	switch typ {
	case mysql.MYSQL_TYPE_TINY:
		integer("tinyint")
	case mysql.MYSQL_TYPE_SHORT:
		integer("smallint")
	case mysql.MYSQL_TYPE_INT24:
		integer("mediumint")
	case mysql.MYSQL_TYPE_LONG:
		integer("int")
	case mysql.MYSQL_TYPE_LONGLONG:
		integer("bigint")
	case mysql.MYSQL_TYPE_NEWDECIMAL:
		c.Kind, c.DataType = schema.KindDecimal, "decimal"
		c.ColumnType = fmt.Sprintf("decimal(%d,%d)", meta>>8, meta&0xFF)
	case mysql.MYSQL_TYPE_FLOAT:
		c.Kind, c.DataType = schema.KindFloat, "float"
	case mysql.MYSQL_TYPE_DOUBLE:
		c.Kind, c.DataType = schema.KindDouble, "double"
	case mysql.MYSQL_TYPE_DATE, mysql.MYSQL_TYPE_NEWDATE:
		c.Kind, c.DataType = schema.KindDate, "date"
	case mysql.MYSQL_TYPE_TIME:
		c.Kind, c.DataType = schema.KindTime, "time"
	case mysql.MYSQL_TYPE_TIME2:
		c.Kind, c.DataType, c.FSP = schema.KindTime, "time", int(meta)
		d.timeFSP[i] = int(meta)
	case mysql.MYSQL_TYPE_DATETIME:
		c.Kind, c.DataType = schema.KindDateTime, "datetime"
	case mysql.MYSQL_TYPE_DATETIME2:
		c.Kind, c.DataType, c.FSP = schema.KindDateTime, "datetime", int(meta)
	case mysql.MYSQL_TYPE_TIMESTAMP:
		c.Kind, c.DataType = schema.KindTimestamp, "timestamp"
	case mysql.MYSQL_TYPE_TIMESTAMP2:
		c.Kind, c.DataType, c.FSP = schema.KindTimestamp, "timestamp", int(meta)
	case mysql.MYSQL_TYPE_YEAR:
		c.Kind, c.DataType = schema.KindYear, "year"
	case mysql.MYSQL_TYPE_BIT:
		c.Kind, c.DataType = schema.KindBit, "bit"
		c.ColumnType = fmt.Sprintf("bit(%d)", (meta>>8)*8+meta&0xFF)
	case mysql.MYSQL_TYPE_JSON:
		c.Kind, c.DataType = schema.KindJSON, "json"
	case mysql.MYSQL_TYPE_VARCHAR, mysql.MYSQL_TYPE_VAR_STRING:
		c.Kind, c.DataType = schema.KindString, "varchar"
	case mysql.MYSQL_TYPE_BLOB:
		c.Kind = schema.KindString
		switch meta {
		case 1:
			c.DataType = "tinytext"
		case 2:
			c.DataType = "text"
		case 3:
			c.DataType = "mediumtext"
		default:
			c.DataType = "longtext"
		}
	case mysql.MYSQL_TYPE_STRING:
		// CHAR/BINARY, or ENUM/SET, which the binlog types as STRING with the real type in
		// the metadata's high byte (see go-mysql's decodeValue).
		length := int(meta)
		if meta >= 256 {
			b0, b1 := byte(meta>>8), byte(meta&0xFF)
			switch b0 {
			case mysql.MYSQL_TYPE_ENUM:
				c.Kind, c.DataType = schema.KindEnum, "enum"
				return nil
			case mysql.MYSQL_TYPE_SET:
				c.Kind, c.DataType = schema.KindSet, "set"
				return nil
			}
			if b0&0x30 != 0x30 {
				length = int(uint16(b1) | uint16((b0&0x30)^0x30)<<4)
			} else {
				length = int(b1)
			}
		}
		c.Kind, c.DataType = schema.KindString, "char"
		// Only BINARY(n) pads with 0x00; buildDef clears this for text columns.
		d.pad[i] = length
	case mysql.MYSQL_TYPE_ENUM:
		c.Kind, c.DataType = schema.KindEnum, "enum"
	case mysql.MYSQL_TYPE_SET:
		c.Kind, c.DataType = schema.KindSet, "set"
	case mysql.MYSQL_TYPE_GEOMETRY:
		return fmt.Errorf("spatial columns are not supported by cleave; exclude the table or change the column")
	default:
		return fmt.Errorf("binlog column type %d is not supported by cleave; exclude the table or change the column", typ)
	}
	return nil
}

// charset returns the character set of a collation id.
func (c collations) charset(id uint64) (string, error) {
	if id == 63 {
		return "binary", nil
	}
	cs, ok := c[id]
	if !ok {
		return "", fmt.Errorf("collation id %d is unknown to the source's information_schema.COLLATIONS", id)
	}
	return cs, nil
}

// sameTable reports whether a cached definition still describes table map tm.
func (d *tableDef) sameTable(tm *replication.TableMapEvent) bool {
	return d.tableID == tm.TableID && string(d.colTypes) == string(tm.ColumnType)
}

// image writes one row image of a rows event into img, in event form.
func (d *tableDef) image(img *rowImage, values []any) error {
	cols := d.table.Columns
	if len(values) != len(cols) {
		return fmt.Errorf("row of %s has %d values for %d columns", d.name, len(values), len(cols))
	}
	img.reset()
	for i := range cols {
		v := values[i]
		switch {
		case v == nil:
			img.Text = append(img.Text, "null"...)
			img.End()
			continue
		case d.pad[i] > 0:
			v = padBinary(v, d.pad[i])
		case d.timeFSP[i] > 0:
			v = padTime(v, d.timeFSP[i])
		}
		var err error
		switch x := v.(type) {
		case mysqlJSON:
			img.Text, err = img.appendJSON(img.Text, &cols[i], x)
		case *jsonNode: // a document a partial JSON update changed (partialjson.go)
			img.Text = img.appendJSONDoc(img.Text, &cols[i], x)
		default:
			img.Text, err = appendColumn(img.Text, &cols[i], v)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", d.name, err)
		}
		img.End()
	}
	return nil
}

// padBinary restores the trailing 0x00 bytes of a BINARY(n) value, which the binlog drops.
func padBinary(v any, n int) any {
	var b []byte
	switch x := v.(type) {
	case string:
		if len(x) >= n {
			return v
		}
		b = make([]byte, n)
		copy(b, x)
	case []byte:
		if len(x) >= n {
			return v
		}
		b = make([]byte, n)
		copy(b, x)
	default:
		return v
	}
	return b
}

// padTime gives a TIME(fsp) value its fraction: go-mysql drops a zero fraction
// ("12:00:00" for "12:00:00.000"), SELECT shows it.
func padTime(v any, fsp int) any {
	s, ok := v.(string)
	if !ok || strings.IndexByte(s, '.') >= 0 {
		return v
	}
	return s + "." + "000000"[:fsp]
}
