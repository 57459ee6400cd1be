package capture

import (
	"encoding/binary"
	"math"
	"reflect"
	"strconv"
	"time"
	"unsafe"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
)

// Design note: decoding rows events.
//
// go-mysql decodes every row of every rows event, of every table, into Go values. Two of
// its habits cost more than the rest of capture's work per row: it formats each DATETIME
// with fmt.Sprintf and rebuilds the table's signedness map for each row. rowsDecoder is
// installed as the syncer's RowsEventDecodeFunc and
//
//   - skips the rows of tables capture does not stream (it reads the event header only, so
//     the reader still sees the table), which in a monolith is most of the binlog;
//   - decodes the rows of streamed tables into exactly the values go-mysql's decoder
//     returns (same Go types, same text), computing per event what go-mysql computes per
//     row and formatting times with strconv. Column types it does not handle (spatial,
//     the pre-5.6 temporal encodings, old DECIMAL) make it hand the whole event to
//     go-mysql's decoder. MySQL's binary JSON values are handed on undecoded
//     (mysqlJSON) to capture's own JSON decoder (json.go). MySQL's partial JSON
//     updates are decoded by the same reader (partialjson.go).
//
// rowsdecode_test.go decodes real binlog events of every column type both ways and
// requires identical results, so the values capture encodes are go-mysql's (but for JSON).

// rowsDecoder is a replication.BinlogSyncerConfig.RowsEventDecodeFunc.
type rowsDecoder struct {
	// wanted reports whether capture streams db.table; nil means every table.
	wanted func(db, table []byte) bool
}

func (d rowsDecoder) decode(e *replication.RowsEvent, data []byte) (err error) {
	defer func() {
		// A truncated event would index past its end, as in go-mysql's decoder, which
		// recovers too.
		if r := recover(); r != nil {
			err = errShortRow
		}
	}()
	pos, err := e.DecodeHeader(data)
	if err != nil {
		return err
	}
	if d.wanted != nil && !d.wanted(e.Table.Schema, e.Table.Table) {
		return nil
	}
	if e.Type() == replication.EnumRowsEventTypeUnknown {
		// go-mysql names every rows event type but MySQL's PARTIAL_UPDATE_ROWS_EVENT.
		return decodePartialUpdate(e, data, pos)
	}
	if !fastDecodable(e.Table) || !uncompressed(e) {
		// MariaDB's compressed rows events are go-mysql's.
		return e.DecodeData(pos, data)
	}
	rd := rowReader{table: e.Table, unsigned: unsignedColumns(e.Table)}
	update := e.Type() == replication.EnumRowsEventTypeUpdate
	e.Rows = e.Rows[:0]
	e.SkippedColumns = e.SkippedColumns[:0]
	for pos < len(data) {
		n, err := rd.image(e, data[pos:], e.ColumnBitmap1)
		if err != nil {
			return err
		}
		pos += n
		if update {
			if n, err = rd.image(e, data[pos:], e.ColumnBitmap2); err != nil {
				return err
			}
			pos += n
		}
	}
	return nil
}

// compressedField locates RowsEvent's unexported "compressed" flag (set for MariaDB's
// *_COMPRESSED_EVENT_V1), which rowsDecoder must not read as plain rows.
var compressedField = func() []int {
	f, ok := reflect.TypeFor[replication.RowsEvent]().FieldByName("compressed")
	if !ok || f.Type.Kind() != reflect.Bool {
		return nil
	}
	return f.Index
}()

// uncompressed reports whether e's rows are stored plainly. When go-mysql no longer has
// the flag it says false, and go-mysql decodes every event.
func uncompressed(e *replication.RowsEvent) bool {
	return compressedField != nil && !reflect.ValueOf(e).Elem().FieldByIndex(compressedField).Bool()
}

// fastDecodable reports whether rowReader decodes every column type of the table.
func fastDecodable(tm *replication.TableMapEvent) bool {
	for _, t := range tm.ColumnType {
		if !fastDecodableType(t) {
			return false
		}
	}
	return true
}

// fastDecodableType reports whether rowReader decodes columns of binlog type t.
func fastDecodableType(t byte) bool {
	switch t {
	case mysql.MYSQL_TYPE_TINY, mysql.MYSQL_TYPE_SHORT, mysql.MYSQL_TYPE_INT24, mysql.MYSQL_TYPE_LONG,
		mysql.MYSQL_TYPE_LONGLONG, mysql.MYSQL_TYPE_FLOAT, mysql.MYSQL_TYPE_DOUBLE, mysql.MYSQL_TYPE_NEWDECIMAL,
		mysql.MYSQL_TYPE_DATE, mysql.MYSQL_TYPE_TIME2, mysql.MYSQL_TYPE_DATETIME2, mysql.MYSQL_TYPE_TIMESTAMP2,
		mysql.MYSQL_TYPE_YEAR, mysql.MYSQL_TYPE_BIT, mysql.MYSQL_TYPE_BLOB, mysql.MYSQL_TYPE_VARCHAR,
		mysql.MYSQL_TYPE_VAR_STRING, mysql.MYSQL_TYPE_STRING, mysql.MYSQL_TYPE_JSON:
		return true
	}
	return false
}

// unsignedColumns is go-mysql's TableMapEvent.UnsignedMap as a slice.
func unsignedColumns(tm *replication.TableMapEvent) []bool {
	out := make([]bool, tm.ColumnCount)
	for i, u := range tm.UnsignedMap() {
		out[i] = u
	}
	return out
}

type rowReader struct {
	table    *replication.TableMapEvent
	unsigned []bool
}

func bitSet(bitmap []byte, i int) bool { return bitmap[i>>3]&(1<<(uint(i)&7)) != 0 }

// image decodes one row image and appends it to e.Rows; it returns the bytes it used.
func (rd *rowReader) image(e *replication.RowsEvent, data []byte, bitmap []byte) (int, error) {
	n := int(e.ColumnCount)
	present := 0
	for i := 0; i < n; i++ {
		if bitSet(bitmap, i) {
			present++
		}
	}
	pos := (present + 7) / 8
	if pos > len(data) {
		return 0, errShortRow
	}
	nulls := data[:pos]
	row := make([]any, n)
	skips := make([]int, 0, n-present)
	ni := 0
	for i := 0; i < n; i++ {
		if !bitSet(bitmap, i) {
			skips = append(skips, i)
			continue
		}
		isNull := nulls[ni>>3]&(1<<(uint(ni)&7)) != 0
		ni++
		if isNull {
			continue
		}
		v, size, err := rd.value(data[pos:], i)
		if err != nil {
			return 0, err
		}
		row[i] = v
		pos += size
	}
	e.Rows = append(e.Rows, row)
	e.SkippedColumns = append(e.SkippedColumns, skips)
	return pos, nil
}

type decodeError string

func (e decodeError) Error() string { return string(e) }

const errShortRow = decodeError("rows event ends inside a row")

// value decodes column i at the start of data, as go-mysql's RowsEvent.decodeValue does
// with ParseTime off, TimestampStringLocation UTC and UseDecimal off.
func (rd *rowReader) value(data []byte, i int) (any, int, error) {
	tp := rd.table.ColumnType[i]
	meta := rd.table.ColumnMeta[i]
	unsigned := rd.unsigned[i]
	length := 0
	if tp == mysql.MYSQL_TYPE_STRING {
		if meta >= 256 {
			b0, b1 := uint8(meta>>8), uint8(meta&0xFF)
			if b0&0x30 != 0x30 {
				length = int(uint16(b1) | uint16((b0&0x30)^0x30)<<4)
				tp = b0 | 0x30
			} else {
				length = int(meta & 0xFF)
				tp = b0
			}
		} else {
			length = int(meta)
		}
	}
	switch tp {
	case mysql.MYSQL_TYPE_TINY:
		if unsigned {
			return data[0], 1, nil
		}
		return int8(data[0]), 1, nil
	case mysql.MYSQL_TYPE_SHORT:
		u := binary.LittleEndian.Uint16(data)
		if unsigned {
			return u, 2, nil
		}
		return int16(u), 2, nil
	case mysql.MYSQL_TYPE_INT24:
		if unsigned {
			return mysql.ParseBinaryUint24(data), 3, nil
		}
		return mysql.ParseBinaryInt24(data), 3, nil
	case mysql.MYSQL_TYPE_LONG:
		u := binary.LittleEndian.Uint32(data)
		if unsigned {
			return u, 4, nil
		}
		return int32(u), 4, nil
	case mysql.MYSQL_TYPE_LONGLONG:
		u := binary.LittleEndian.Uint64(data)
		if unsigned {
			return u, 8, nil
		}
		return int64(u), 8, nil
	case mysql.MYSQL_TYPE_FLOAT:
		return math.Float32frombits(binary.LittleEndian.Uint32(data)), 4, nil
	case mysql.MYSQL_TYPE_DOUBLE:
		return math.Float64frombits(binary.LittleEndian.Uint64(data)), 8, nil
	case mysql.MYSQL_TYPE_NEWDECIMAL:
		return decimalText(data, int(meta>>8), int(meta&0xFF))
	case mysql.MYSQL_TYPE_DATE:
		u := uint32(mysql.FixedLengthInt(data[0:3]))
		if u == 0 {
			return "0000-00-00", 3, nil
		}
		b := make([]byte, 0, 10)
		b = appendPadded(b, int(u/(16*32)), 4)
		b = append(b, '-')
		b = appendPadded(b, int(u/32%16), 2)
		b = append(b, '-')
		b = appendPadded(b, int(u%32), 2)
		return bytesString(b), 3, nil
	case mysql.MYSQL_TYPE_TIME2:
		return time2Text(data, int(meta))
	case mysql.MYSQL_TYPE_DATETIME2:
		return datetime2Text(data, int(meta))
	case mysql.MYSQL_TYPE_TIMESTAMP2:
		return timestamp2Text(data, int(meta))
	case mysql.MYSQL_TYPE_YEAR:
		if data[0] == 0 {
			return 0, 1, nil
		}
		return int(data[0]) + 1900, 1, nil
	case mysql.MYSQL_TYPE_BIT:
		nbits := int((meta>>8)*8 + meta&0xFF)
		size := (nbits + 7) / 8
		var u uint64
		for _, c := range data[:size] {
			u = u<<8 | uint64(c)
		}
		return int64(u), size, nil
	case mysql.MYSQL_TYPE_ENUM:
		switch meta & 0xFF {
		case 1:
			return int64(data[0]), 1, nil
		case 2:
			return int64(binary.LittleEndian.Uint16(data)), 2, nil
		}
		return nil, 0, decodeError("unknown ENUM pack length " + strconv.Itoa(int(meta&0xFF)))
	case mysql.MYSQL_TYPE_SET:
		size := int(meta & 0xFF)
		if size < 1 || size > 8 {
			return nil, 0, decodeError("unknown SET pack length " + strconv.Itoa(size))
		}
		return int64(mysql.FixedLengthInt(data[:size])), size, nil
	case mysql.MYSQL_TYPE_BLOB:
		var l int
		switch meta {
		case 1:
			l = int(data[0])
		case 2:
			l = int(binary.LittleEndian.Uint16(data))
		case 3:
			l = int(mysql.FixedLengthInt(data[0:3]))
		case 4:
			l = int(binary.LittleEndian.Uint32(data))
		default:
			return nil, 0, decodeError("invalid blob pack length " + strconv.Itoa(int(meta)))
		}
		return data[int(meta) : int(meta)+l], int(meta) + l, nil
	case mysql.MYSQL_TYPE_VARCHAR, mysql.MYSQL_TYPE_VAR_STRING:
		return varString(data, int(meta))
	case mysql.MYSQL_TYPE_STRING:
		return varString(data, length)
	case mysql.MYSQL_TYPE_JSON:
		// MySQL's binary JSON, decoded by capture itself (json.go), not by go-mysql.
		return jsonColumn(data, int(meta))
	}
	return nil, 0, decodeError("column type " + strconv.Itoa(int(tp)) + " not handled")
}

// varString reads a string with a 1- or 2-byte length prefix (by the column's maximum
// length), sharing the event's memory as go-mysql does.
func varString(data []byte, max int) (any, int, error) {
	if max < 256 {
		l := int(data[0])
		return bytesString(data[1 : 1+l]), l + 1, nil
	}
	l := int(binary.LittleEndian.Uint16(data))
	return bytesString(data[2 : 2+l]), l + 2, nil
}

// bytesString returns b as a string without copying; b must not change afterwards.
func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func appendPadded(b []byte, v, width int) []byte {
	var tmp [20]byte
	s := strconv.AppendInt(tmp[:0], int64(v), 10)
	for i := len(s); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, s...)
}

// appendFrac appends "." and the first dec digits of the microseconds frac.
func appendFrac(b []byte, frac, dec int) []byte {
	if dec == 0 {
		return b
	}
	var tmp [8]byte
	digits := appendPadded(tmp[:0], frac, 6)
	b = append(b, '.')
	return append(b, digits[:dec]...)
}

func zeroDatetime(frac, dec int) string {
	if dec == 0 {
		return "0000-00-00 00:00:00"
	}
	return string(appendFrac([]byte("0000-00-00 00:00:00"), frac, dec))
}

func appendDatetime(b []byte, year, month, day, hour, minute, second int) []byte {
	b = appendPadded(b, year, 4)
	b = append(b, '-')
	b = appendPadded(b, month, 2)
	b = append(b, '-')
	b = appendPadded(b, day, 2)
	b = append(b, ' ')
	b = appendPadded(b, hour, 2)
	b = append(b, ':')
	b = appendPadded(b, minute, 2)
	b = append(b, ':')
	return appendPadded(b, second, 2)
}

func datetime2Text(data []byte, dec int) (any, int, error) {
	n := 5 + (dec+1)/2
	intPart := int64(mysql.BFixedLengthInt(data[0:5])) - 0x8000000000
	var frac int64
	switch dec {
	case 1, 2:
		frac = int64(data[5]) * 10000
	case 3, 4:
		frac = int64(binary.BigEndian.Uint16(data[5:7])) * 100
	case 5, 6:
		frac = int64(mysql.BFixedLengthInt(data[5:8]))
	}
	if intPart == 0 {
		return zeroDatetime(int(frac), dec), n, nil
	}
	tmp := intPart<<24 + frac
	if tmp < 0 {
		tmp = -tmp
	}
	ymdhms := tmp >> 24
	ymd := ymdhms >> 17
	ym := ymd >> 5
	hms := ymdhms % (1 << 17)
	b := make([]byte, 0, 26)
	b = appendDatetime(b, int(ym/13), int(ym%13), int(ymd%(1<<5)), int(hms>>12), int((hms>>6)%(1<<6)), int(hms%(1<<6)))
	// go-mysql prints the fraction from the stored microseconds, not the time's.
	if dec > 0 {
		var tmp [8]byte
		digits := appendPadded(tmp[:0], int(frac), 6)
		b = append(b, '.')
		b = append(b, digits[:dec]...)
	}
	return bytesString(b), n, nil
}

func timestamp2Text(data []byte, dec int) (any, int, error) {
	n := 4 + (dec+1)/2
	sec := int64(binary.BigEndian.Uint32(data[0:4]))
	var usec int64
	switch dec {
	case 1, 2:
		usec = int64(data[4]) * 10000
	case 3, 4:
		usec = int64(binary.BigEndian.Uint16(data[4:])) * 100
	case 5, 6:
		usec = int64(mysql.BFixedLengthInt(data[4:7]))
	}
	if sec == 0 {
		return zeroDatetime(int(usec), dec), n, nil
	}
	t := time.Unix(sec, usec*1000).UTC()
	b := make([]byte, 0, 26)
	b = appendDatetime(b, t.Year(), int(t.Month()), t.Day(), t.Hour(), t.Minute(), t.Second())
	b = appendFrac(b, t.Nanosecond()/1000, dec)
	return bytesString(b), n, nil
}

func time2Text(data []byte, dec int) (any, int, error) {
	const intOfs, ofs = int64(0x800000), int64(0x800000000000)
	n := 3 + (dec+1)/2
	var tmp, intPart, frac int64
	switch dec {
	case 1, 2:
		intPart = int64(mysql.BFixedLengthInt(data[0:3])) - intOfs
		frac = int64(data[3])
		if intPart < 0 && frac != 0 {
			intPart++
			frac -= 0x100
		}
		tmp = intPart<<24 + frac*10000
	case 3, 4:
		intPart = int64(mysql.BFixedLengthInt(data[0:3])) - intOfs
		frac = int64(binary.BigEndian.Uint16(data[3:5]))
		if intPart < 0 && frac != 0 {
			intPart++
			frac -= 0x10000
		}
		tmp = intPart<<24 + frac*100
	case 5, 6:
		tmp = int64(mysql.BFixedLengthInt(data[0:6])) - ofs
		return timeText(tmp, dec), n, nil
	default:
		intPart = int64(mysql.BFixedLengthInt(data[0:3])) - intOfs
		tmp = intPart << 24
	}
	if intPart == 0 && frac == 0 {
		return "00:00:00", n, nil
	}
	return timeText(tmp, dec), n, nil
}

// timeText is go-mysql's timeFormat.
func timeText(tmp int64, dec int) string {
	b := make([]byte, 0, 18)
	if tmp < 0 {
		tmp = -tmp
		b = append(b, '-')
	}
	hms := tmp >> 24
	b = appendPadded(b, int((hms>>12)%(1<<10)), 2)
	b = append(b, ':')
	b = appendPadded(b, int((hms>>6)%(1<<6)), 2)
	b = append(b, ':')
	b = appendPadded(b, int(hms%(1<<6)), 2)
	if secPart := tmp % (1 << 24); secPart != 0 {
		b = appendFrac(b, int(secPart), dec)
	}
	return bytesString(b)
}

var decimalBytes = [10]int{0, 1, 1, 2, 2, 3, 3, 4, 4, 4}

// decimalText decodes a DECIMAL(precision, scale) into its exact text, as go-mysql's
// decodeDecimal does (without copying the event's bytes).
func decimalText(data []byte, precision, scale int) (any, int, error) {
	const digitsPer = 9
	integral := precision - scale
	uncompInt, uncompFrac := integral/digitsPer, scale/digitsPer
	compInt, compFrac := integral-uncompInt*digitsPer, scale-uncompFrac*digitsPer
	size := uncompInt*4 + decimalBytes[compInt] + uncompFrac*4 + decimalBytes[compFrac]
	if size > len(data) {
		return nil, 0, errShortRow
	}
	var mask byte
	b := make([]byte, 0, precision+3)
	if data[0]&0x80 == 0 {
		mask = 0xFF
		b = append(b, '-')
	}
	// The sign bit is flipped in the first byte; read it through a patched copy of that byte.
	word := func(pos, n int) uint32 {
		var v uint32
		for i := 0; i < n; i++ {
			c := data[pos+i]
			if pos+i == 0 {
				c ^= 0x80
			}
			v = v<<8 | uint32(c^mask)
		}
		return v
	}
	pos := 0
	leading := true
	if n := decimalBytes[compInt]; n > 0 {
		if v := word(0, n); v != 0 {
			leading = false
			b = strconv.AppendUint(b, uint64(v), 10)
		}
		pos = n
	}
	for k := 0; k < uncompInt; k++ {
		v := word(pos, 4)
		pos += 4
		if leading {
			if v != 0 {
				leading = false
				b = strconv.AppendUint(b, uint64(v), 10)
			}
			continue
		}
		b = appendPadded(b, int(v), digitsPer)
	}
	if leading {
		b = append(b, '0')
	}
	if pos < size {
		b = append(b, '.')
		for k := 0; k < uncompFrac; k++ {
			b = appendPadded(b, int(word(pos, 4)), digitsPer)
			pos += 4
		}
		if n := decimalBytes[compFrac]; n > 0 {
			b = appendPadded(b, int(word(pos, n)), compFrac)
			pos += n
		}
	}
	return bytesString(b), size, nil
}
