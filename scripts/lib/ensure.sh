#!/usr/bin/env bash
# Installs the Debian packages that the local services and the tests need, only when the
# command they provide is missing, so a fresh machine (CI) gets them and a warm one pays
# nothing. Source it for ensure_cmd, or run it: `scripts/lib/ensure.sh promtool`.

_cleave_apt_updated=${_cleave_apt_updated:-0}

# ensure_cmd CMD PACKAGE... installs PACKAGE... with apt-get when CMD is not on PATH.
ensure_cmd() {
	local cmd=$1
	shift
	if command -v "$cmd" >/dev/null 2>&1 || [[ -x /usr/sbin/$cmd ]]; then
		return 0
	fi
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "error: $cmd is missing and apt-get is not available: install $* by hand" >&2
		return 1
	fi
	local sudo=()
	if [[ $(id -u) -ne 0 ]]; then
		sudo=(sudo)
	fi
	echo "installing $* (for $cmd) with apt-get ..." >&2
	local aptlog
	aptlog=$(mktemp)
	if [[ $_cleave_apt_updated -eq 0 ]]; then
		if ! DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update -qq >"$aptlog" 2>&1; then
			cat "$aptlog" >&2
			rm -f "$aptlog"
			echo "error: apt-get update failed" >&2
			return 1
		fi
		_cleave_apt_updated=1
	fi
	if ! DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$@" >"$aptlog" 2>&1; then
		cat "$aptlog" >&2
		rm -f "$aptlog"
		echo "error: apt-get install $* failed" >&2
		return 1
	fi
	rm -f "$aptlog"
	if ! command -v "$cmd" >/dev/null 2>&1 && [[ ! -x /usr/sbin/$cmd ]]; then
		echo "error: installed $* but $cmd is still not on PATH" >&2
		return 1
	fi
}

# ensure_tool NAME: the tools the project knows how to install by name.
ensure_tool() {
	case $1 in
	mariadbd | mariadb | mariadb-admin | mariadb-install-db)
		ensure_cmd mariadbd mariadb-server mariadb-client
		ensure_cmd mariadb mariadb-client
		;;
	kcat) ensure_cmd kcat kcat ;;
	promtool | prometheus) ensure_cmd promtool prometheus && ensure_cmd prometheus prometheus ;;
	amtool | alertmanager | prometheus-alertmanager)
		ensure_cmd prometheus-alertmanager prometheus-alertmanager
		ensure_cmd amtool prometheus-alertmanager
		;;
	pt-table-checksum) ensure_cmd pt-table-checksum percona-toolkit ;;
	java) ensure_cmd java openjdk-17-jre-headless ;;
	mvn) ensure_cmd mvn maven ;;
	*)
		echo "error: ensure_tool: unknown tool $1" >&2
		return 1
		;;
	esac
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	set -euo pipefail
	if [[ $# -eq 0 ]]; then
		echo "usage: $0 TOOL... (mariadbd kcat promtool prometheus alertmanager amtool pt-table-checksum java mvn)" >&2
		exit 2
	fi
	for tool in "$@"; do
		ensure_tool "$tool"
	done
fi
