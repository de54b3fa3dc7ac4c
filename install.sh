#!/usr/bin/env bash
# Install p2pos on Debian/Ubuntu: system packages, a release build, the binary, man page and
# completions; optionally a first node (--new-system / --join) and the systemd unit (--systemd).
# Non-interactive with flags, asks on a TTY when no mode is given, safe to run twice.
set -euo pipefail
cd "$(dirname "$0")"

PREFIX=/usr/local
DATA_DIR=/var/lib/p2pos
MODE=""
SYSTEM_PUBKEY=""
CLUSTER_ID=""
BOOTSTRAP=()
SYSTEMD=0
DESTDIR="${DESTDIR:-}"

usage() {
    cat <<USAGE
Usage: ./install.sh [options]
  --prefix DIR            install under DIR (default /usr/local)
  --data-dir DIR          node data directory (default /var/lib/p2pos)
  --new-system            create a new system with this machine as its first node
  --join SYSTEM_PUBKEY    create a node that joins the system with this public key
  --cluster-id ID         cluster id (new system: default random)
  --bootstrap ADDR        bootstrap multiaddr or dns:DOMAIN for --join (repeatable)
  --systemd               install and enable the systemd unit (p2pos.service)
  -h, --help              this help
USAGE
}

while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX="$2"; shift 2 ;;
        --data-dir) DATA_DIR="$2"; shift 2 ;;
        --new-system) MODE=new; shift ;;
        --join) MODE=join; SYSTEM_PUBKEY="$2"; shift 2 ;;
        --cluster-id) CLUSTER_ID="$2"; shift 2 ;;
        --bootstrap) BOOTSTRAP+=("$2"); shift 2 ;;
        --systemd) SYSTEMD=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option $1 (see ./install.sh --help)" >&2; exit 2 ;;
    esac
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

echo "==> system packages"
scripts/install-deps

echo "==> release build"
swift build -c release -q
BIN="$(swift build -c release --show-bin-path)/p2pos"

echo "==> installing into ${DESTDIR}${PREFIX}"
$SUDO install -d "${DESTDIR}${PREFIX}/bin" "${DESTDIR}${PREFIX}/share/man/man1" \
    "${DESTDIR}${PREFIX}/share/bash-completion/completions" "${DESTDIR}${PREFIX}/share/zsh/site-functions" \
    "${DESTDIR}${PREFIX}/share/fish/vendor_completions.d"
$SUDO install -m 0755 "$BIN" "${DESTDIR}${PREFIX}/bin/p2pos"
$SUDO install -m 0644 man/p2pos.1 "${DESTDIR}${PREFIX}/share/man/man1/p2pos.1"
$SUDO install -m 0644 completions/p2pos.bash "${DESTDIR}${PREFIX}/share/bash-completion/completions/p2pos"
$SUDO install -m 0644 completions/_p2pos "${DESTDIR}${PREFIX}/share/zsh/site-functions/_p2pos"
$SUDO install -m 0644 completions/p2pos.fish "${DESTDIR}${PREFIX}/share/fish/vendor_completions.d/p2pos.fish"
P2POS="${DESTDIR}${PREFIX}/bin/p2pos"
"$P2POS" version

if [ -z "$MODE" ] && [ -t 0 ] && [ ! -f "${DESTDIR}${DATA_DIR}/config.json" ]; then
    read -r -p "Set up a node now? (new/join/skip) [skip]: " answer
    case "$answer" in
        new) MODE=new ;;
        join) MODE=join; read -r -p "System public key: " SYSTEM_PUBKEY; read -r -p "Bootstrap (multiaddr or dns:DOMAIN): " b; BOOTSTRAP+=("$b") ;;
    esac
fi

if [ -n "$MODE" ]; then
    if [ -f "${DESTDIR}${DATA_DIR}/config.json" ]; then
        echo "==> ${DATA_DIR}/config.json exists; keeping the existing node ($("$P2POS" id --data-dir "${DESTDIR}${DATA_DIR}" | head -1))"
    elif [ "$MODE" = new ]; then
        args=(init --new-system --data-dir "${DESTDIR}${DATA_DIR}")
        [ -n "$CLUSTER_ID" ] && args+=(--cluster-id "$CLUSTER_ID")
        $SUDO "$P2POS" "${args[@]}"
    else
        args=(init --join --system-pubkey "$SYSTEM_PUBKEY" --data-dir "${DESTDIR}${DATA_DIR}")
        [ -n "$CLUSTER_ID" ] && args+=(--cluster-id "$CLUSTER_ID")
        for b in "${BOOTSTRAP[@]}"; do args+=(--bootstrap "$b"); done
        $SUDO "$P2POS" "${args[@]}"
    fi
fi

if [ "$SYSTEMD" = 1 ]; then
    echo "==> systemd unit"
    $SUDO install -d "${DESTDIR}/etc/systemd/system"
    sed -e "s|@BIN@|${PREFIX}/bin/p2pos|g" -e "s|@DATA_DIR@|${DATA_DIR}|g" packaging/p2pos.service | $SUDO tee "${DESTDIR}/etc/systemd/system/p2pos.service" >/dev/null
    if [ -z "$DESTDIR" ]; then
        $SUDO systemctl daemon-reload
        if [ -f "${DATA_DIR}/config.json" ]; then
            $SUDO systemctl enable --now p2pos.service
            echo "    p2pos.service enabled and started; logs: journalctl -u p2pos -f"
        else
            $SUDO systemctl enable p2pos.service
            echo "    p2pos.service enabled; create the node first (p2pos init …), then: systemctl start p2pos"
        fi
    else
        echo "    wrote ${DESTDIR}/etc/systemd/system/p2pos.service (DESTDIR set: not enabling)"
    fi
fi
echo "==> done. Try: p2pos help"
