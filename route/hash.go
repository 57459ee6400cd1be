package route

import (
	"crypto/md5"
	"encoding/binary"
)

// HashKey is the 64-bit hash of a canonical shard key: the first 8 bytes of MD5(canonical),
// big endian. MD5 is not here for security: it is the one well-spread hash that MySQL and
// MariaDB compute natively, so the checker can filter a shard's rows on the server
// (TableSpec.MemberSQL) and get exactly what Go gets. A NULL shard key is not hashed: it is 0.
//
// This function is the routing contract: changing it moves rows between shards.
func HashKey(canonical []byte) uint64 {
	sum := md5.Sum(canonical)
	return binary.BigEndian.Uint64(sum[:8])
}

// SQLHashExpr returns a MariaDB/MySQL expression that computes, for a column (already
// quoted, like "`user_id`" or "t.`id`"), the same unsigned 64-bit value as HashKey of the
// column's canonical form, and 0 when the column is NULL.
//
// MD5() hashes CAST(col AS BINARY): decimal text for integers, the exact DECIMAL text,
// datetimes with the column's fraction digits, and the stored bytes of strings and binary
// strings in the column's own character set. The cast is what MySQL 9.6+'s MD5 (from
// component_classic_hashing) needs, which refuses a number; MariaDB's gives the same hash
// with or without it. For columns whose text is not stable (FLOAT, DOUBLE) no hash can be
// trusted: do not shard on them.
func SQLHashExpr(quotedColumn string) string {
	return "IFNULL(CAST(CONV(LEFT(MD5(CAST(" + quotedColumn + " AS BINARY)),16),16,10) AS UNSIGNED),0)"
}
