package event

import (
	"fmt"
	"strconv"
	"strings"
)

// Version orders the changes of one row. It is derived only from the binlog position of the
// change, so the same change re-read after a restart carries the same version:
//
//	version = file_index << 36 | (event_start_pos + row_index)
//
// file_index is the numeric suffix of the binlog file (mysql-bin.000042 -> 42), event_start_pos
// is the offset of the rows event in that file and row_index the row's index inside the
// event. Every row of a rows event occupies at least one byte of it, so event_start_pos +
// row_index stays below the start of the next event: versions strictly increase in binlog
// order. (Compressed events, where rows may take less than a byte each, follow a rule of
// their own in capture: see capture/compressed.go.) 36 bits of offset allow binlog files of 64 GiB, 28 bits of index 268 million files.
//
// Versions compare only within one source server's binlog history; after a failover to
// another server the positions, and so the versions, start anew (see README, limits).
type Version uint64

// Limits of the version layout.
const (
	offsetBits = 36
	maxOffset  = 1<<offsetBits - 1
	maxFile    = 1<<(64-offsetBits) - 1
)

// NewVersion derives the version of the rowIndex-th row of the rows event that starts at
// pos in the binlog file named file.
func NewVersion(file string, pos uint64, rowIndex int) (Version, error) {
	idx, err := FileIndex(file)
	if err != nil {
		return 0, err
	}
	off := pos + uint64(rowIndex)
	if idx > maxFile || off > maxOffset || rowIndex < 0 {
		return 0, fmt.Errorf("binlog position %s:%d row %d is outside cleave's version range (file index < 2^28, offset < 2^36)", file, pos, rowIndex)
	}
	return Version(idx<<offsetBits | off), nil
}

// FileIndex returns the numeric suffix of a binlog file name.
func FileIndex(file string) (uint64, error) {
	dot := strings.LastIndexByte(file, '.')
	if dot < 0 || dot == len(file)-1 {
		return 0, fmt.Errorf("binlog file name %q has no numeric suffix", file)
	}
	n, err := strconv.ParseUint(file[dot+1:], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("binlog file name %q has no numeric suffix", file)
	}
	return n, nil
}

// Position splits a version back into its binlog file index and offset.
func (v Version) Position() (fileIndex, offset uint64) {
	return uint64(v) >> offsetBits, uint64(v) & maxOffset
}

func (v Version) String() string {
	f, o := v.Position()
	return fmt.Sprintf("%d(%d:%d)", uint64(v), f, o)
}
