#!/usr/bin/env bash
# Mail relay throughput: postfix's smtp-source -> vestibule (fsync before 250) -> smtp-sink smarthost.
# Counts that every message arrives exactly once. Loopback only, bounded.
# Usage: benches/mail-load.sh [messages] [sessions]   (needs: cargo build --release; bash .ci/prereqs test)
set -euo pipefail
cd "$(dirname "$0")/.."
msgs=${1:-10000}; sessions=${2:-8}
pf=.test-peers/postfix; export LD_LIBRARY_PATH=$pf/usr/lib/postfix
[ -x $pf/usr/sbin/smtp-source ] || { echo "run: bash .ci/prereqs test" >&2; exit 1; }
bin=target/release/vestibule; [ -x $bin ] || { echo "build first: cargo build --release" >&2; exit 1; }
work=$(mktemp -d); chmod 777 "$work"; mkdir "$work/sink"; chmod 777 "$work/sink"
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
smtp=28801; sink=28802; admin=28803; http=28804
taskset -c 0 $pf/usr/sbin/smtp-sink -u nobody -c -d "$work/sink/%M." 127.0.0.1:$sink 256 >/dev/null 2>&1 &
cat > "$work/vestibule.toml" <<TOML
state_dir = "$work/state"
[log]
level = "warn"
[admin]
listen = "127.0.0.1:$admin"
[proxy]
listen = ["127.0.0.1:$http"]
threads = 1
[mail]
listen = ["127.0.0.1:$smtp"]
hostname = "vestibule.test"
smarthost = "smtp://127.0.0.1:$sink"
smarthost_tls = "none"
max_connections_per_ip = 64
TOML
taskset -c 1 $bin run --config "$work/vestibule.toml" 2>"$work/vestibule.log" &
for _ in $(seq 100); do curl -s "http://127.0.0.1:$admin/healthz" >/dev/null && break; sleep 0.05; done
cpu() { awk '{print $14+$15}' /proc/$(pgrep -f "$work/vestibule.toml" | head -1)/stat; }
c0=$(cpu); t0=$(date +%s.%N)
taskset -c 0 $pf/usr/sbin/smtp-source -s "$sessions" -m "$msgs" -l 4096 -M vestibule.test -f a@vestibule.test -t b@example.org 127.0.0.1:$smtp
t1=$(date +%s.%N)
for _ in $(seq 600); do n=$(ls "$work/sink" | wc -l); [ "$n" -ge "$msgs" ] && break; sleep 0.1; done
t2=$(date +%s.%N); c1=$(cpu); hz=$(getconf CLK_TCK)
n=$(ls "$work/sink" | wc -l)
awk -v m="$msgs" -v n="$n" -v a="$t0" -v b="$t1" -v c="$t2" -v c0="$c0" -v c1="$c1" -v hz="$hz" 'BEGIN {
  printf "messages sent %d, delivered %d (%s)\n", m, n, (n == m ? "each exactly once" : "MISMATCH");
  printf "accept: %.0f msg/s (%.2f s)\n", m / (b - a), b - a;
  printf "end to end: %.0f msg/s (%.2f s)\n", m / (c - a), c - a;
  printf "vestibule CPU: %.2f ms per message\n", (c1 - c0) / hz * 1000 / m }'
[ "$n" -eq "$msgs" ]
