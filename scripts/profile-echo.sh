#!/usr/bin/env bash
# Where an echo server's CPU goes: runs one server on one CPU and the bench's load
# client on another, samples the server with `perf`, and splits its time into the TCP/IP
# stack, io_uring, epoll, the scheduler, memory and user space (by the sampled function).
#
#   scripts/profile-echo.sh [--conns N] [--secs S] [--bin DIR] [uring|epoll|tokio ...]
#
# Needs perf (Debian: linux-perf) and builds of `greenfd` and `greenfd-bench` in DIR
# (default target/release: `cargo build --release -p greenfd -p greenfd-bench`).
# Default: all three servers, 100 connections, 5 s each.
set -euo pipefail
cd "$(dirname "$0")/.."

conns=100 secs=5 bin=target/release servers=()
while [ $# -gt 0 ]; do
  case "$1" in
    --conns) conns=${2:?--conns needs a number}; shift 2 ;;
    --secs) secs=${2:?--secs needs a number}; shift 2 ;;
    --bin) bin=${2:?--bin needs a directory}; shift 2 ;;
    uring|epoll|tokio) servers+=("$1"); shift ;;
    -h|--help) sed -n '2,10p' "$0" | cut -c3-; exit 0 ;;
    *) echo "profile-echo: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ ${#servers[@]} -gt 0 ] || servers=(uring epoll tokio)

for b in greenfd greenfd-bench; do
  [ -x "$bin/$b" ] || { echo "profile-echo: $bin/$b missing (cargo build --release -p $b, or --bin DIR)" >&2; exit 1; }
done
command -v perf >/dev/null || { echo "profile-echo: perf not found (Debian: apt install linux-perf)" >&2; exit 1; }
cpus=$(nproc)
[ "$cpus" -ge 2 ] || { echo "profile-echo: needs 2 CPUs (server and client apart), have $cpus" >&2; exit 1; }

work=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  [ -n "${KEEP:-}" ] && echo "perf data kept in $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT

# A free loopback port: bind port 0 and read back what the kernel chose.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Server time (user+system clock ticks) of a process.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

printf '%-6s %10s %9s %7s | %6s %8s %6s %6s %6s %6s\n' server "rt/s" "µs/msg" busy \
  tcp/ip io_uring epoll sched memory user
for s in "${servers[@]}"; do
  port=$(free_port)
  case $s in
    tokio) cmd=("$bin/greenfd-bench" peer tokio-echo --addr "127.0.0.1:$port") ;;
    *) cmd=("$bin/greenfd" serve --echo --io "$s" --addr "127.0.0.1:$port") ;;
  esac
  taskset -c 0 "${cmd[@]}" >/dev/null 2>&1 &
  server_pid=$!
  for _ in $(seq 50); do
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$port)).close()" 2>/dev/null && break
    sleep 0.1
  done
  t0=$(ticks "$server_pid")
  perf record -q -e cpu-clock -F 2999 -p "$server_pid" -o "$work/$s.data" -- sleep "$secs" 2>/dev/null &
  perf_pid=$!
  rate=$(taskset -c 1 "$bin/greenfd-bench" load "127.0.0.1:$port" --conns "$conns" --secs "$secs" | awk '{print $1}')
  wait "$perf_pid" || true
  t1=$(ticks "$server_pid")
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
  server_pid=
  hz=$(getconf CLK_TCK)
  perf report -i "$work/$s.data" --no-children --sort dso,sym --stdio 2>/dev/null |
    awk -v name="$s" -v rate="$rate" -v secs="$secs" -v t="$((t1 - t0))" -v hz="$hz" '
      /^#/ || NF < 3 { next }
      {
        pct = $1; sub(/%/, "", pct); sym = $NF; dso = $2
        if ($3 == "[.]") cat = "user"
        else if (sym ~ /^(__)?io_/ && sym !~ /^io_schedule/) cat = "io_uring"
        else if (sym ~ /^(__)?(ep_|do_epoll|epoll)/) cat = "epoll"
        else if (sym ~ /(tcp|^(__)?ip_|^(__)?inet|^(__)?sk_|skb|^(__)?sock|loopback|netif|backlog|^(__)?dev_|bbr|napi|eth_|nf_|raw_v4|__x64_sys_(send|recv)|^(__)?sys_(send|recv))/) cat = "tcpip"
        else if (sym ~ /(sched|switch|schedule|^(__)?wake|enqueue|dequeue|pick_next|update_curr|hrtimer|_raw_spin)/) cat = "sched"
        else if (sym ~ /(kmem|slab|kmalloc|kfree|alloc|free|page|copy|memcpy|memset)/) cat = "memory"
        else cat = "other"
        share[cat] += pct
      }
      END {
        cpu = t / hz
        us = rate > 0 ? cpu * 1e6 / (rate * secs) : 0
        printf "%-6s %10d %9.2f %6.0f%% | %5.0f%% %7.0f%% %5.0f%% %5.0f%% %5.0f%% %5.0f%%  (other %.0f%%)\n",
          name, rate, us, 100 * cpu / secs, share["tcpip"], share["io_uring"], share["epoll"],
          share["sched"], share["memory"], share["user"], share["other"]
      }'
done
echo "busy: the server's CPU time over the run (100% = its CPU was never idle); µs/msg: that time per round trip."
