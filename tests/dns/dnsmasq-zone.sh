#!/bin/sh
# Serve a TXT-only test zone on 127.0.0.1 with dnsmasq, in the foreground, never forwarding.
#
#   tests/dns/dnsmasq-zone.sh PORT ZONEFILE
#
# ZONEFILE: one TXT record per line, `NAME TEXT` (TEXT is the rest of the line; commas split
# it into several character-strings of one record). Blank lines and `#` comments are ignored.
# Names under `.test` that are not listed answer NXDOMAIN; every other name is REFUSED.
# Example:
#   tests/dns/dnsmasq-zone.sh 5353 tests/dns/sample.zone &
#   p2pos dns resolve cluster.test --server 127.0.0.1:5353
set -eu
port=${1:?usage: dnsmasq-zone.sh PORT ZONEFILE}
zone=${2:?usage: dnsmasq-zone.sh PORT ZONEFILE}
bin=$(command -v dnsmasq || true)
[ -n "$bin" ] || for c in /usr/sbin/dnsmasq /sbin/dnsmasq; do [ -x "$c" ] && bin=$c; done
[ -n "$bin" ] || { echo "dnsmasq not found: apt-get install -y dnsmasq-base" >&2; exit 1; }

set -- --no-daemon --conf-file=/dev/null --port="$port" --listen-address=127.0.0.1 \
    --bind-interfaces --no-resolv --no-hosts --no-poll --pid-file --local=/test/ \
    --cache-size=0 --log-facility=- --log-queries
while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in ''|'#'*) continue ;; esac
    name=${line%% *}
    text=${line#* }
    set -- "$@" "--txt-record=$name,$text"
done < "$zone"
exec "$bin" "$@"
