#!/usr/bin/env bash
# Exits 0 when prism's HTTP listener answers GET /healthz with 200 "ok", 1
# otherwise (refused, no answer within 5 s, another answer):
#   packaging/healthcheck.sh [HOST:PORT]     (default 127.0.0.1:8080)
# The Docker image's HEALTHCHECK runs this script (it needs bash and coreutils
# only: no curl in the runtime image); tests/packaging.rs runs it against a
# running prism. /healthz needs no token, even with [http] protect_reads.
set -uo pipefail
addr=${1:-127.0.0.1:8080}
host=${addr%:*}
port=${addr##*:}
host=${host#[}
host=${host%]}
answer=$(timeout 5 bash -c '
  exec 3<>"/dev/tcp/$0/$1" || exit 1
  printf "GET /healthz HTTP/1.0\r\nHost: prism\r\nConnection: close\r\n\r\n" >&3
  cat <&3
' "$host" "$port" 2>/dev/null) || exit 1
status=$(printf '%s\n' "$answer" | head -n 1 | tr -d '\r')
body=$(printf '%s\n' "$answer" | tail -n 1 | tr -d '\r')
case "$status" in
  "HTTP/1."?" 200"*) ;;
  *) exit 1 ;;
esac
[ "$body" = ok ]
