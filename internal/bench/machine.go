package bench

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// Machine is what the figures were measured on.
type Machine struct {
	CPUs     int    `json:"cpus"`
	CPUModel string `json:"cpu_model"`
	MemoryMB int64  `json:"memory_mib"`
	OS       string `json:"os"`
}

func (m Machine) String() string {
	return fmt.Sprintf("%d CPUs (%s), %.1f GiB memory, %s", m.CPUs, m.CPUModel, float64(m.MemoryMB)/1024, m.OS)
}

// ThisMachine describes the machine the process runs on, from /proc where it has it.
func ThisMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), CPUModel: "unknown CPU", OS: runtime.GOOS + "/" + runtime.GOARCH}
	if v, ok := procField("/proc/cpuinfo", "model name"); ok {
		m.CPUModel = v
	}
	if v, ok := procField("/proc/meminfo", "MemTotal"); ok {
		if kb, err := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64); err == nil {
			m.MemoryMB = kb / 1024
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.OS += ", Linux " + strings.TrimSpace(string(data))
	}
	return m
}

// procField returns the value of the first "key: value" line of a /proc file.
func procField(path, key string) (string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// PeakRSS returns the peak resident set size (VmHWM) of process pid in bytes.
func PeakRSS(pid int) (int64, error) {
	v, ok := procField(fmt.Sprintf("/proc/%d/status", pid), "VmHWM")
	if !ok {
		return 0, fmt.Errorf("no VmHWM in /proc/%d/status (has the process exited?)", pid)
	}
	kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(v, "kB")), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("VmHWM of process %d: %q: %w", pid, v, err)
	}
	return kb * 1024, nil
}
