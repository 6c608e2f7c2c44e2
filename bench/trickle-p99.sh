#!/bin/bash
# p99 of constant-rate traffic without and with 2,000 slow-loris connections (bench/trickle.py),
# issue 13, recorded in bench/RESULTS.md. Needs release builds of orchestra-gateway,
# orchestra-loadtest and bench-upstream. Loopback only; stops what it starts.
set -u
cd "$(dirname "$0")/.."
BIN=target/release
DIR=$(mktemp -d /tmp/harden-measure.XXXX)
UP=127.0.0.1:19801
GW=127.0.0.1:19880
cat > $DIR/gw.toml <<TOML
[listeners]
http = "$GW"
[server]
threads = 1
data_dir = "$DIR/data"
[[upstreams]]
name = "up"
balancer = "round_robin"
targets = [{ addr = "$UP" }]
[[routes]]
match = { path_prefix = "/" }
upstream = "up"
TOML
$BIN/bench-upstream --listen $UP --threads 1 > $DIR/up.log 2>&1 &
UPID=$!
RUST_LOG=warn ORCHESTRA_THREADS=1 $BIN/orchestra-gateway run -c $DIR/gw.toml > $DIR/gw.log 2>&1 &
GWPID=$!
trap 'kill $UPID $GWPID 2>/dev/null; wait 2>/dev/null; rm -rf "$DIR"' EXIT
for i in $(seq 1 100); do curl -s -o /dev/null http://$GW/healthz && break; sleep 0.1; done
LT="$BIN/orchestra-loadtest h1 --url http://$GW/ --rate 2000 -c 64 -d 10s --warmup 2s --json"
for round in 1 2; do
  echo "round $round baseline: $($LT 2>/dev/null)"
  python3 bench/trickle.py --addr $GW --connections 2000 --interval 1.0 --duration 22 > $DIR/trickle-$round.json &
  TPID=$!
  sleep 8
  echo "round $round trickle: $($LT 2>/dev/null)"
  wait $TPID
  echo "round $round trickler: $(cat $DIR/trickle-$round.json)"
done
echo "gateway fds at end: $(ls /proc/$GWPID/fd | wc -l)"
