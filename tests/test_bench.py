"""`p2pos bench tx` end to end: a real 3-node cluster, signed txs, a JSON report."""
import json
import subprocess


def test_bench_tx_reports_throughput_latency_and_memory(p2pos, tmp_path):
    # 160 clients: more than a node's default control API connection limit (128); the bench
    # raises it for its cluster, so every client is served and none fails.
    r = p2pos("bench", "tx", "--nodes", "3", "--clients", "1,160", "--duration", "1s",
              "--compare", "none", "--json", extra_env={"TMPDIR": str(tmp_path)}, timeout=240)
    assert r.code == 0, r.err
    report = json.loads(r.out)
    assert report["kind"] == "tx" and report["nodes"] == 3 and report["fsync"] is True
    assert [lvl["clients"] for lvl in report["levels"]] == [1, 160]
    for lvl in report["levels"]:
        ours = lvl["p2pos"]
        assert ours["ops"] > 0 and ours["errors"] == 0 and "clients_out_of_txs" not in ours, lvl
        assert 0 < ours["p50_ms"] <= ours["p95_ms"] <= ours["p99_ms"] <= ours["p999_ms"] <= ours["max_ms"], lvl
        assert "etcd" not in lvl
        # CPU the three node processes used per committed tx (from /proc/<pid>/stat): at least
        # the three signature checks' worth, and far below a second.
        assert 50 < ours["server_cpu_us_per_op"] < 1_000_000, lvl
    rss = report["p2pos_peak_rss_mib"]
    assert len(rss) == 3 and all(5 < m < 2048 for m in rss), rss
    # The cluster's data directories are removed afterwards.
    assert not list(tmp_path.glob("p2pos-bench-*"))


def test_bench_tx_runs_repeats_the_pass_and_summarizes(p2pos, tmp_path):
    r = p2pos("bench", "tx", "--nodes", "3", "--clients", "2", "--duration", "1s", "--runs", "2",
              "--compare", "none", "--json", extra_env={"TMPDIR": str(tmp_path)}, timeout=240)
    assert r.code == 0, r.err
    report = json.loads(r.out)
    assert "levels" not in report and len(report["runs"]) == 2
    medians = []
    for run in report["runs"]:
        [lvl] = run["levels"]
        assert lvl["clients"] == 2 and lvl["p2pos"]["ops"] > 0 and lvl["p2pos"]["errors"] == 0, lvl
        assert len(run["p2pos_peak_rss_mib"]) == 3
        medians.append(lvl["p2pos"]["ops_per_sec"])
    [summary] = report["summary"]
    assert summary["clients"] == 2 and summary["runs"] == 2
    # The median of two runs lies between them; nothing about etcd without it.
    assert min(medians) - 1 <= summary["p2pos_ops_per_sec_median"] <= max(medians) + 1, (summary, medians)
    assert 0 < summary["p2pos_p50_ms_median"] <= summary["p2pos_p99_ms_median"], summary
    assert not any(k.startswith("etcd") or "ratio" in k for k in summary), summary
    assert not list(tmp_path.glob("p2pos-bench-*"))


def test_bench_tx_refuses_bad_runs_and_compare_values(p2pos):
    for args in (["--runs", "0"], ["--runs", "x"], ["--compare", "zookeeper"]):
        r = p2pos("bench", "tx", "--clients", "1", "--duration", "1s", *args)
        assert r.code == 2, (args, r.out, r.err)
        assert args[0] in r.err, (args, r.err)


def test_bench_tx_measures_etcd_side_by_side_alternating_the_order(p2pos, tmp_path):
    # Debian's etcd-server (scripts/install-deps --test) started by scripts/etcd-cluster beside
    # the p2pos cluster; each level is measured on both back to back.
    r = p2pos("bench", "tx", "--nodes", "1", "--clients", "2", "--duration", "1s", "--runs", "2",
              "--json", extra_env={"TMPDIR": str(tmp_path)}, timeout=240)
    assert r.code == 0, r.err
    report = json.loads(r.out)
    for run in report["runs"]:
        [lvl] = run["levels"]
        for system in ("p2pos", "etcd"):
            assert lvl[system]["ops"] > 0 and lvl[system]["errors"] == 0, lvl
            assert 0 < lvl[system]["p50_ms"] <= lvl[system]["p99_ms"], lvl
        ratio = lvl["p2pos"]["ops_per_sec"] / lvl["etcd"]["ops_per_sec"]
        assert abs(lvl["throughput_ratio"] - ratio) < 0.01, lvl
    [summary] = report["summary"]
    assert summary["runs"] == 2 and summary["etcd_ops_per_sec_median"] > 0, summary
    assert 0 <= summary["runs_throughput_at_least_etcd"] <= 2, summary
    # The ratio of the systems' server CPU per op, summarized like the others.
    cpu = [run["levels"][0]["cpu_per_op_ratio"] for run in report["runs"]]
    assert summary["cpu_per_op_ratio_min"] == min(cpu) and summary["cpu_per_op_ratio_max"] == max(cpu), (summary, cpu)
    assert min(cpu) <= summary["cpu_per_op_ratio_median"] <= max(cpu), (summary, cpu)
    # The order of the measurements, from the progress lines on stderr.
    order = [line.split(": ")[1].split(",")[0] for line in r.err.splitlines()
             if line.startswith("bench tx: ") and line.endswith(", 2 clients")]
    # Each system twice for half the duration, A B B A, A = p2pos in odd runs and etcd in even.
    assert order == ["p2pos", "etcd", "etcd", "p2pos", "etcd", "p2pos", "p2pos", "etcd"], r.err
    for run in report["runs"]:
        for system in ("p2pos", "etcd"):
            # The two halves (0.5 s each) are reported as one measurement.
            assert 0.9 < run["levels"][0][system]["seconds"] < 1.6, run
    # Both clusters are gone afterwards: no data directories, no etcd process.
    assert not list(tmp_path.glob("p2pos-bench-*")) and not list(tmp_path.glob("p2pos-etcd-*"))
    ps = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert ps.stdout.strip() == "", ps.stdout
