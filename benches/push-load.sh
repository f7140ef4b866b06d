#!/usr/bin/env bash
# Sustained push notifications/s through vestibule's push relay to a loopback upstream push proxy
# (nginx answering {"status":"OK"}), with wrk posting Mattermost's body. Loopback only, bounded time.
# Usage: benches/push-load.sh [seconds] [connections]   (needs: cargo build --release; wrk, nginx)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}; conns=${2:-32}
for p in wrk nginx; do command -v $p >/dev/null || { echo "install $p: apt-get install wrk nginx-light" >&2; exit 1; }; done
bin=target/release/vestibule; [ -x $bin ] || { echo "build first: cargo build --release" >&2; exit 1; }
work=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; nginx -p "$work" -c nginx.conf -s stop 2>/dev/null; rm -rf "$work"' EXIT
up=28700; push=28701; admin=28702; http=28703
cat > "$work/nginx.conf" <<NGX
worker_processes 1; daemon on; pid $work/nginx.pid; error_log $work/error.log;
events { worker_connections 1024; }
http { access_log off; server { listen 127.0.0.1:$up; location / { default_type application/json; return 200 '{"status":"OK"}'; } } }
NGX
taskset -c 0 nginx -p "$work" -c nginx.conf
cat > "$work/vestibule.toml" <<TOML
state_dir = "$work/state"
[log]
level = "warn"
access_log = false
[admin]
listen = "127.0.0.1:$admin"
[proxy]
listen = ["127.0.0.1:$http"]
threads = 1
[push]
listen = "127.0.0.1:$push"
rate_limit = { per_second = 1000000, burst = 1000000 }
[[push.route]]
platforms = ["apple_rn", "android_rn"]
upstream = "http://127.0.0.1:$up"
TOML
taskset -c 1 $bin run --config "$work/vestibule.toml" 2>"$work/vestibule.log" &
for _ in $(seq 100); do curl -s "http://127.0.0.1:$admin/healthz" >/dev/null && break; sleep 0.05; done
cat > "$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"ack_id":"ack1","platform":"apple_rn-v2","server_id":"srv1","device_id":"dev1","post_id":"post1","category":"CAN_REPLY","sound":"default","message":"hello there","badge":1,"team_id":"team1","channel_id":"chan1","root_id":"","channel_name":"Town Square","type":"message","sender_id":"user1","sender_name":"alice","version":"v2","is_crt_enabled":false,"is_id_loaded":false}'
LUA
echo "push relay -> loopback upstream push proxy: ${secs}s, $conns connections (vestibule on CPU 1, nginx and wrk on CPU 0)"
taskset -c 0 wrk -t1 -c"$conns" -d"${secs}s" --latency -s "$work/post.lua" "http://127.0.0.1:$push/api/v1/send_push"
curl -s "http://127.0.0.1:$admin/metrics" | grep -E '^vestibule_push_notifications_total' || true
