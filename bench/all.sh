#!/usr/bin/env bash
# Every headline of docs/benchmarks.md, one after the other, on a quiet machine (nothing else running).
# Each bench starts the embedded servers under var/bench (BENCH_DATABASE_URL / BENCH_REDIS_URL override)
# and holds the bench lock; the output of each lands in var/bench/results/<UTC time>-<name>.txt.
#     bash bench/all.sh [name ...]      # all, or only the named ones (e.g. platform_ingest line_delivery)
set -uo pipefail
cd "$(dirname "$0")/.."
out="var/bench/results"
mkdir -p "$out"
declare -A BENCHES=(
  [platform_ingest]="--duration 3 --connections 64 --rounds 15 --max-steal 0.1 --auth both"
  [loyalty_ingest]="--duration 3 --connections 64 --rounds 15 --max-steal 0.1"
  [campaigns_estimate]="--duration 3 --connections 16 --rounds 15 --max-steal 0.1 --workers 2 --threads 1"
  [line_braze_ingest]="--duration 3 --connections 64 --rounds 15 --max-steal 0.1"
  [history_read]="--entries 1000000 --duration 10 --repeat 3 --with-campaign"
  [history_ingest]="--rate 500 --seconds 20 --workers 2 --threads 32 --connections 64 --nack-backoff 10.0"
  [history_handler]="--events 6000"
  [line_delivery]="--messages 200000 --identical 1000000 --processes 2 --threads 8"
  [line_audience]="--linkages 100000 --job-seconds 10"
  [campaigns_settle]="--lines 1000000 --customers 100000"
  [platform_poison]="--pushes 400 --poisoned 10 --rounds 3"
  [campaigns_grants]="--grants 2864 --fail-percent 5 --outage-seconds 60"
  [platform_ratelimit]="--processes 4 --seconds 5"
  [loyalty_additive]="--n100 1000 --n10k 1000 --n100k 10 --lookups 300"
)
# The history read is served by sync workers with the loaded application frozen out of the GC (README).
declare -A ENVS=([history_read]="WSGI_GC_FREEZE=1 BENCH_GUNICORN_THREADS=1")
ORDER=(platform_ingest platform_poison loyalty_ingest campaigns_estimate line_braze_ingest history_read history_ingest
       history_handler line_delivery line_audience campaigns_settle campaigns_grants platform_ratelimit
       loyalty_additive)
names=("$@")
[ ${#names[@]} -eq 0 ] && names=("${ORDER[@]}")
status=0
for name in "${names[@]}"; do
  file="$out/$(date -u +%Y%m%dT%H%M%SZ)-$name.txt"
  echo "== $name -> $file"
  # shellcheck disable=SC2086
  flock /tmp/mops-bench.lock env ${ENVS[$name]:-} .venv/bin/python -m "bench.$name" ${BENCHES[$name]} >"$file" 2>&1 \
    || status=1
  tail -n 5 "$file"
done
exit $status
