# Helpers shared by the bench scripts (sourced, not run). Loopback only.

# Waits until something listens on 127.0.0.1:$1 (10 s at most); if nothing does, shows the end
# of the log file $2 when given (the server's own reason) and exits.
#
# The benches' ports sit below Linux's ephemeral range (32768-60999 by default): a load opens
# thousands of connections from ephemeral ports, and a server started next on one of them,
# still in use or waiting out TIME_WAIT, could not bind (bench/compare stopped twice on that).
wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on 127.0.0.1:$1" >&2
    [ -n "${2:-}" ] && tail -n 5 "$2" >&2
    exit 1
}

# utime + stime of a process, in clock ticks (/proc/PID/stat fields 14 and 15).
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# utime alone (user space), in clock ticks; the rest of `ticks` is the kernel's (stime).
user_ticks() { awk '{print $14}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

# Resident memory of a process in KiB (VmRSS).
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# User + system seconds of this shell's finished children, from bash's `times` (second line:
# "0m1.234s 0m0.056s"), so simulate's own CPU is read without /usr/bin/time. `times` must run
# in the calling shell, not in a $(…) subshell, whose children are its own: it writes to $1.
children_cpu() {
    tail -n1 "$1" | awk '{
        t = 0
        for (i = 1; i <= 2; i++) { split($i, p, "m"); sub("s", "", p[2]); t += p[1] * 60 + p[2] }
        printf "%.3f", t
    }'
}

# The numbers in simulate's "turnaround per chunk" line: p50, p99 and max in ms.
turnaround_field() { # line, p50|p99|max
    sed -E "s/.*$2 ([0-9.]+) ms.*/\\1/" <<<"$1"
}
