# bash completion for p2pos; generated from the command table, do not edit.
_p2pos() {
    local cur prev words cword
    cur="${COMP_WORDS[COMP_CWORD]}"
    prev="${COMP_WORDS[COMP_CWORD-1]}"
    local cmd="${COMP_WORDS[1]}" sub="${COMP_WORDS[2]}"
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W "init keygen node tx api snapshot dns status peers ping bench id completions version help" -- "$cur"))
        return
    fi
    case "$cmd" in
    init)
        case "$prev" in
        --cluster-id) return ;;
        --system-pubkey) return ;;
        --bootstrap) return ;;
        --listen) return ;;
        --admin-valid-to) return ;;
        --data-dir) COMPREPLY=($(compgen -d -- "$cur")); return ;;
        --config) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        esac
        COMPREPLY=($(compgen -W "--new-system --join --cluster-id --system-pubkey --bootstrap --listen --admin-valid-to --data-dir --config --force --json --help" -- "$cur"))
        ;;
    keygen)
        case "$prev" in
        --cluster-id) return ;;
        --admin-valid-to) return ;;
        --node-priv) return ;;
        --out) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        esac
        COMPREPLY=($(compgen -W "--new-system --cluster-id --admin-valid-to --node-priv --out --force --json --help" -- "$cur"))
        ;;
    node)
        if [ "$COMP_CWORD" -eq 2 ]; then
            COMPREPLY=($(compgen -W "run" -- "$cur"))
            return
        fi
        case "$sub" in
        run)
            case "$prev" in
            --config) COMPREPLY=($(compgen -f -- "$cur")); return ;;
            --data-dir) COMPREPLY=($(compgen -d -- "$cur")); return ;;
            esac
            COMPREPLY=($(compgen -W "--config --data-dir --dev --help" -- "$cur"))
            ;;
        esac
        ;;
    tx)
        if [ "$COMP_CWORD" -eq 2 ]; then
            COMPREPLY=($(compgen -W "sign submit" -- "$cur"))
            return
        fi
        case "$sub" in
        sign)
            case "$prev" in
            --key) COMPREPLY=($(compgen -f -- "$cur")); return ;;
            --op) return ;;
            --payload) return ;;
            --cluster-id) return ;;
            --config) COMPREPLY=($(compgen -f -- "$cur")); return ;;
            --data-dir) COMPREPLY=($(compgen -d -- "$cur")); return ;;
            esac
            COMPREPLY=($(compgen -W "--key --op --payload --cluster-id --config --data-dir --help" -- "$cur"))
            ;;
        submit)
            case "$prev" in
            --socket) COMPREPLY=($(compgen -f -- "$cur")); return ;;
            --config) COMPREPLY=($(compgen -f -- "$cur")); return ;;
            --data-dir) COMPREPLY=($(compgen -d -- "$cur")); return ;;
            esac
            COMPREPLY=($(compgen -W "--no-wait --socket --config --data-dir --json --help" -- "$cur"))
            ;;
        esac
        ;;
    api)
        case "$prev" in
        --socket) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --config) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --data-dir) COMPREPLY=($(compgen -d -- "$cur")); return ;;
        esac
        COMPREPLY=($(compgen -W "--socket --config --data-dir --json --help" -- "$cur"))
        ;;
    snapshot)
        if [ "$COMP_CWORD" -eq 2 ]; then
            COMPREPLY=($(compgen -W "publish push" -- "$cur"))
            return
        fi
        case "$sub" in
        publish)
            case "$prev" in
            --members) return ;;
            --add) return ;;
            --remove) return ;;
            --admin-key) COMPREPLY=($(compgen -f -- "$cur")); return ;;
            --to) return ;;
            --socket) COMPREPLY=($(compgen -f -- "$cur")); return ;;
            --config) COMPREPLY=($(compgen -f -- "$cur")); return ;;
            --data-dir) COMPREPLY=($(compgen -d -- "$cur")); return ;;
            esac
            COMPREPLY=($(compgen -W "--members --add --remove --admin-key --to --socket --config --data-dir --json --help" -- "$cur"))
            ;;
        push)
            case "$prev" in
            --to) return ;;
            --socket) COMPREPLY=($(compgen -f -- "$cur")); return ;;
            --config) COMPREPLY=($(compgen -f -- "$cur")); return ;;
            --data-dir) COMPREPLY=($(compgen -d -- "$cur")); return ;;
            esac
            COMPREPLY=($(compgen -W "--to --socket --config --data-dir --json --help" -- "$cur"))
            ;;
        esac
        ;;
    dns)
        if [ "$COMP_CWORD" -eq 2 ]; then
            COMPREPLY=($(compgen -W "resolve" -- "$cur"))
            return
        fi
        case "$sub" in
        resolve)
            case "$prev" in
            --server) return ;;
            esac
            COMPREPLY=($(compgen -W "--server --json --help" -- "$cur"))
            ;;
        esac
        ;;
    status)
        case "$prev" in
        --socket) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --config) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --data-dir) COMPREPLY=($(compgen -d -- "$cur")); return ;;
        esac
        COMPREPLY=($(compgen -W "--cluster --watch --socket --config --data-dir --json --help" -- "$cur"))
        ;;
    peers)
        case "$prev" in
        --socket) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --config) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --data-dir) COMPREPLY=($(compgen -d -- "$cur")); return ;;
        esac
        COMPREPLY=($(compgen -W "--socket --config --data-dir --json --help" -- "$cur"))
        ;;
    ping)
        case "$prev" in
        --count|-n) return ;;
        --key) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        esac
        COMPREPLY=($(compgen -W "--count --key --json --help" -- "$cur"))
        ;;
    bench)
        if [ "$COMP_CWORD" -eq 2 ]; then
            COMPREPLY=($(compgen -W "net heartbeat verify status raft tx" -- "$cur"))
            return
        fi
        case "$sub" in
        net)
            case "$prev" in
            --compare) COMPREPLY=($(compgen -W "py-libp2p" -- "$cur")); return ;;
            --target) return ;;
            --round-trips) return ;;
            --perf-gib) return ;;
            esac
            COMPREPLY=($(compgen -W "--compare --target --round-trips --perf-gib --help" -- "$cur"))
            ;;
        heartbeat)
            case "$prev" in
            --members) return ;;
            --rate) return ;;
            --duration) return ;;
            esac
            COMPREPLY=($(compgen -W "--members --rate --duration --json --help" -- "$cur"))
            ;;
        verify)
            case "$prev" in
            --count) return ;;
            --signers) return ;;
            --rounds) return ;;
            esac
            COMPREPLY=($(compgen -W "--count --signers --rounds --json --help" -- "$cur"))
            ;;
        status)
            case "$prev" in
            --nodes) return ;;
            --requests) return ;;
            esac
            COMPREPLY=($(compgen -W "--nodes --requests --json --help" -- "$cur"))
            ;;
        raft)
            case "$prev" in
            --nodes) return ;;
            --clients) return ;;
            --duration) return ;;
            --size) return ;;
            --compare) COMPREPLY=($(compgen -W "etcd none" -- "$cur")); return ;;
            --runs) return ;;
            esac
            COMPREPLY=($(compgen -W "--nodes --clients --duration --size --compare --runs --json --help" -- "$cur"))
            ;;
        tx)
            case "$prev" in
            --nodes) return ;;
            --clients) return ;;
            --duration) return ;;
            --size) return ;;
            --compare) COMPREPLY=($(compgen -W "etcd none" -- "$cur")); return ;;
            --runs) return ;;
            esac
            COMPREPLY=($(compgen -W "--nodes --clients --duration --size --compare --runs --json --help" -- "$cur"))
            ;;
        esac
        ;;
    id)
        case "$prev" in
        --config) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --data-dir) COMPREPLY=($(compgen -d -- "$cur")); return ;;
        esac
        COMPREPLY=($(compgen -W "--config --data-dir --json --help" -- "$cur"))
        ;;
    completions)
        COMPREPLY=($(compgen -W "--help bash zsh fish" -- "$cur"))
        ;;
    version)
        COMPREPLY=($(compgen -W "--json --help" -- "$cur"))
        ;;
    help)
        COMPREPLY=($(compgen -W "--man --help init keygen node tx api snapshot dns status peers ping bench id completions version help" -- "$cur"))
        ;;
    esac
}
complete -F _p2pos p2pos
