#!/usr/bin/env bash
# Peak resident memory (VmHWM from /proc/PID/status) of running processes.
#
#   bench/memory.sh [--tree] [--total] PID...
#
# Prints one line per process:  pid=<pid> vmhwm_kib=<peak> vmrss_kib=<now> comm=<name>
# then                           total_vmhwm_kib=<sum of the peaks>
# --tree  also counts every descendant of each PID (e.g. nginx workers under the master)
# --total print only the total, in KiB (for scripts)
# Read it before the process exits: the kernel forgets the peak with the process.
# The sum of per-process peaks is an upper bound of the group's peak.
set -euo pipefail

tree=0
total_only=0
pids=()
for a in "$@"; do
    case "$a" in
        --tree) tree=1 ;;
        --total) total_only=1 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *[!0-9]*|'') echo "memory.sh: not a PID: $a" >&2; exit 2 ;;
        *) pids+=("$a") ;;
    esac
done
[ "${#pids[@]}" -gt 0 ] || { echo "usage: bench/memory.sh [--tree] [--total] PID..." >&2; exit 2; }

descendants() {
    local kids k
    kids="$(cat /proc/"$1"/task/*/children 2>/dev/null || true)"
    for k in $kids; do
        echo "$k"
        descendants "$k"
    done
}

all=()
for p in "${pids[@]}"; do
    all+=("$p")
    if [ "$tree" = 1 ]; then
        while read -r d; do [ -n "$d" ] && all+=("$d"); done < <(descendants "$p")
    fi
done

total=0
seen=" "
for p in "${all[@]}"; do
    case "$seen" in *" $p "*) continue ;; esac
    seen+="$p "
    status="/proc/$p/status"
    if ! hwm="$(awk '/^VmHWM:/ {print $2}' "$status" 2>/dev/null)"; then
        case " ${pids[*]} " in
            *" $p "*) echo "memory.sh: no process $p" >&2; exit 1 ;;
            *) continue ;; # a descendant that exited meanwhile
        esac
    fi
    rss="$(awk '/^VmRSS:/ {print $2}' "$status" 2>/dev/null || true)"
    comm="$(cat /proc/"$p"/comm 2>/dev/null || echo '?')"
    hwm="${hwm:-0}"
    total=$((total + hwm))
    [ "$total_only" = 1 ] || echo "pid=$p vmhwm_kib=$hwm vmrss_kib=${rss:-0} comm=$comm"
done
if [ "$total_only" = 1 ]; then echo "$total"; else echo "total_vmhwm_kib=$total"; fi
