"""Leaderboard: collecting run directories, aggregation over seeds, best-per-column, every output
format, the aggregate columns, refusals and plots. Fake run directories only (no model)."""

from __future__ import annotations

import argparse
import csv
import html
import io
import json
import math
from html.parser import HTMLParser
from pathlib import Path

import pytest

from mmu_bench import leaderboard as lb
from mmu_bench.errors import MMUError
from mmu_bench.settings import FULL, VISUAL

FT = {"forget.vqa.mcq.acc": 1.0, "test.vqa.mcq.acc": 0.95, "forget.qa.mcq.acc": 1.0, "retain.vqa.mcq.acc": 1.0,
      "retain.qa.mcq.acc": 1.0, "real.vqa.mcq.acc": 0.9, "utility.vqa.mcq.acc": 0.8}
REFERENCE = {"finetuned": FT,
             "retrain": FT | {"forget.vqa.mcq.acc": 0.25, "test.vqa.mcq.acc": 0.25, "forget.qa.mcq.acc": 0.25},
             "retrain_visual": FT | {"forget.vqa.mcq.acc": 0.25, "test.vqa.mcq.acc": 0.25}}


def metrics(forget=0.5, retain=0.8, **extra):
    return {"forget.vqa.mcq.acc": forget, "test.vqa.mcq.acc": forget, "forget.qa.mcq.acc": 0.9,
            "retain.vqa.mcq.acc": retain, "retain.qa.mcq.acc": 0.9, "real.vqa.mcq.acc": 0.9,
            "utility.vqa.mcq.acc": 0.8, "forget.vqa.mcq.n": 200} | extra


def make_run(root: Path, method: str, seed: int, values: dict, *, reference=None, protocol="static",
             protocol_dir=None, split="forget_10", method_dir=None, status="finished", curves=None,
             benchmark="synthetic", model="tiny-llava", setting="visual") -> Path:
    path = (root / benchmark / model / (setting or "legacy") / (method_dir or method) / (protocol_dir or protocol)
            / split / f"seed{seed}")
    path.mkdir(parents=True)
    config = {"spec": {"method": method, "benchmark": benchmark, "model": model, "protocol": protocol,
                       **({"setting": setting} if setting else {}),
                       "forget_split": split, "seed": seed, "world_size": 100, "hyper": {}},
              "method": {"name": method, "hyper": {}}, "benchmark": {"benchmark": benchmark}}
    doc = {"status": status, "diverged": status == "diverged", "metrics": values,
           "reference": REFERENCE if reference is None else reference, "timings": {"unlearn": 1.0}}
    if curves is not None:
        doc["protocol"] = {"curves": curves}
    (path / "config.json").write_text(json.dumps(config))
    (path / "metrics.json").write_text(json.dumps(doc))
    return path


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    for seed, (f, r) in enumerate([(0.1, 0.7), (0.2, 0.8), (0.3, 0.9)]):
        make_run(root, "ga", seed, metrics(f, r))
    make_run(root, "npo", 0, metrics(0.4, 0.95))
    return root


def group(root, **kw):
    groups = lb.aggregate(lb.collect([root]), **kw)
    assert len(groups) == 1
    return groups[0]


def rows(g):
    return {r.label: r for r in g.rows}


def test_aggregation_over_seeds(runs):
    g = group(runs)
    assert [r.label for r in g.rows] == ["finetuned (ref)", "retrain (ref)", "retrain_visual (ref)", "ga", "npo"]
    ga, npo = rows(g)["ga"], rows(g)["npo"]
    assert ga.n == 3 and ga.seeds == [0, 1, 2] and npo.n == 1
    assert ga.mean["forget.vqa.mcq.acc"] == pytest.approx(0.2)
    assert ga.std["forget.vqa.mcq.acc"] == pytest.approx(0.1)   # ddof=1
    assert ga.mean["retain.vqa.mcq.acc"] == pytest.approx(0.8)
    assert npo.std["forget.vqa.mcq.acc"] == 0.0                 # one seed
    ref = rows(g)["finetuned (ref)"]
    assert ref.kind == "reference" and ref.mean["test.vqa.mcq.acc"] == 0.95 and ref.std == {}
    # default columns: report.MAIN_KEYS present, then the aggregates
    assert g.keys == ["forget.vqa.mcq.acc", "test.vqa.mcq.acc", "forget.qa.mcq.acc", "retain.vqa.mcq.acc",
                      "retain.qa.mcq.acc", "real.vqa.mcq.acc", "utility.vqa.mcq.acc", "forget_efficacy", "retention"]
    assert g.title == "synthetic / tiny-llava / setting visual / static / forget_10"


def test_best_is_on_the_right_side_of_the_arrow(runs):
    g = group(runs)
    assert lb.direction("forget.vqa.mcq.acc") == "down" and lb.direction("retain.vqa.mcq.acc") == "up"
    assert g.best("forget.vqa.mcq.acc") == {"ga"}       # min (0.2 < 0.4); the retrain ref (0.25) is not ranked
    assert g.best("retain.vqa.mcq.acc") == {"npo"}      # max (0.95 > 0.8); the refs (1.0) are not ranked
    assert g.best("forget.qa.mcq.acc") == set() and g.tied("forget.qa.mcq.acc") == {"ga", "npo"}  # equal
    md = lb.render([g], "md")
    lines = [[c.strip() for c in ln.strip("|").split("|")] for ln in md.splitlines() if ln.startswith("| ")]
    header, cells = lines[0], {ln[0]: dict(zip(lines[0], ln)) for ln in lines[1:]}
    f, r = "forget.vqa.mcq.acc ↓", "retain.vqa.mcq.acc ↑"
    assert f in header and r in header
    assert cells["ga"][f] == "**0.200 ± 0.100**" and cells["npo"][f] == "0.400 ± 0.000"
    assert cells["npo"][r] == "**0.950 ± 0.000**" and cells["ga"][r] == "0.800 ± 0.100"
    assert cells["retrain (ref)"][f] == "0.250" and cells["finetuned (ref)"][r] == "1.000"
    assert cells["ga"]["forget.qa.mcq.acc ↑"] == cells["npo"]["forget.qa.mcq.acc ↑"] == "≈ 0.900 ± 0.000"
    assert not any("**" in c for c in cells["retrain (ref)"].values())
    assert "forget.vqa.mcq.acc ↓" in md and "retain.vqa.mcq.acc ↑" in md and "forget efficacy ↑" in md


def test_bold_needs_separate_confidence_intervals(runs):
    for seed, f in enumerate([0.15, 0.35]):                     # mean 0.25: its CI reaches ga's (mean 0.2)
        make_run(runs, "kl_min", seed, metrics(f, 0.5))
    make_run(runs, "rmu", 0, metrics(0.6, 0.5))                  # one seed, far behind: a point CI
    g = group(runs)
    ga = rows(g)["ga"]
    assert ga.values["forget.vqa.mcq.acc"] == pytest.approx([0.1, 0.2, 0.3])
    lo, hi = ga.ci["forget.vqa.mcq.acc"]
    assert 0.1 <= lo < 0.2 < hi <= 0.3
    assert rows(g)["rmu"].ci["forget.vqa.mcq.acc"] == (0.6, 0.6)
    assert g.best("forget.vqa.mcq.acc") == set()
    assert g.tied("forget.vqa.mcq.acc") == {"ga", "kl_min"}      # not npo (0.4) nor rmu (0.6): apart
    assert g.best("retain.vqa.mcq.acc") == {"npo"}               # 0.95 above every other CI
    md = lb.render([g], "md")
    assert "| ≈ 0.200 ± 0.100 " in md and "≈ marks the leader" in md and "95 % CI" in md
    assert r"$\approx$ 0.200 $\pm$ 0.100" in lb.render([g], "latex")
    # deterministic: the bootstrap is seeded, so a second aggregation gives the same numbers
    assert lb.render(lb.aggregate(lb.collect([runs])), "csv") == lb.render([g], "csv")


def test_ci_is_a_percentile_bootstrap_of_the_mean():
    assert lb.bootstrap_ci([0.5]) == (0.5, 0.5) and lb.bootstrap_ci([0.3, 0.3, 0.3]) == (0.3, 0.3)
    lo, hi = lb.bootstrap_ci([0.2, 0.4])
    assert (lo, hi) == pytest.approx((0.2, 0.4))                 # means of resamples: 0.2, 0.3, 0.4
    assert lb.bootstrap_ci([0.1, 0.5, 0.2]) == lb.bootstrap_ci([0.1, 0.5, 0.2])
    # zero direction: distances from 0, an interval straddling 0 reaches 0
    assert lb._badness(-0.2, 0.1, "zero") == (0.0, 0.2) and lb._badness(-0.3, -0.1, "zero") == (0.1, 0.3)
    assert lb._badness(0.1, 0.3, "up") == (-0.3, -0.1) and lb._badness(0.1, 0.3, "down") == (0.1, 0.3)


def test_a_single_seed_wins_only_by_a_strictly_better_point(tmp_path):
    make_run(tmp_path, "ga", 0, metrics(0.2))
    make_run(tmp_path, "npo", 0, metrics(0.2004))                # 0.200 at the shown precision: a tie
    make_run(tmp_path, "rmu", 0, metrics(0.3))
    g = group(tmp_path)
    assert g.best("forget.vqa.mcq.acc") == set() and g.tied("forget.vqa.mcq.acc") == {"ga", "npo"}
    make_run(tmp_path, "cvf", 0, metrics(0.19))
    g = group(tmp_path)
    assert g.best("forget.vqa.mcq.acc") == {"cvf"}


def test_csv_has_the_confidence_interval(runs):
    by = {r["row"]: r for r in csv.DictReader(io.StringIO(lb.render([group(runs)], "csv")))}
    lo, hi = rows(group(runs))["ga"].ci["retention"]
    assert float(by["ga"]["retention_ci_low"]) == pytest.approx(lo, abs=1e-6)
    assert float(by["ga"]["retention_ci_high"]) == pytest.approx(hi, abs=1e-6)
    assert by["npo"]["forget.vqa.mcq.acc_ci_low"] == by["npo"]["forget.vqa.mcq.acc_ci_high"] == "0.4"
    assert by["finetuned (ref)"]["forget.vqa.mcq.acc_ci_low"] == ""


def test_zero_direction_bolds_closest_to_zero(tmp_path):
    make_run(tmp_path, "ga", 0, metrics(**{"mia.vqa.loss.privleak_visual": -30.0}), protocol="mia")
    make_run(tmp_path, "npo", 0, metrics(**{"mia.vqa.loss.privleak_visual": 5.0}), protocol="mia")
    g = group(tmp_path)
    assert "mia.vqa.loss.privleak_visual" in g.keys    # the mia protocol's columns, visual oracle
    assert g.best("mia.vqa.loss.privleak_visual") == {"npo"}


def test_aggregate_formulas():
    # forget efficacy = clip((1 - mean(forget, test)) / (1 - 0.25), 0, 1)
    assert VISUAL.forget_efficacy({"forget.vqa.mcq.acc": 0.4, "test.vqa.mcq.acc": 0.2}) == pytest.approx(0.7 / 0.75)
    assert VISUAL.forget_efficacy({"forget.vqa.mcq.acc": 0.25, "test.vqa.mcq.acc": 0.25}) == pytest.approx(1.0)
    assert VISUAL.forget_efficacy({"forget.vqa.mcq.acc": 0.1, "test.vqa.mcq.acc": 0.1}) == 1.0    # below chance: clipped
    assert VISUAL.forget_efficacy({"forget.vqa.mcq.acc": 1.0, "test.vqa.mcq.acc": 1.0}) == 0.0
    assert VISUAL.forget_efficacy({"forget.vqa.mcq.acc": 0.625}) == pytest.approx(0.5)            # only one present
    assert VISUAL.forget_efficacy({}) is None
    # retention = harmonic mean of the five accuracies present; 0 if any is 0
    m = {"retain.vqa.mcq.acc": 0.5, "forget.qa.mcq.acc": 1.0, "retain.qa.mcq.acc": 1.0, "real.vqa.mcq.acc": 1.0,
         "utility.vqa.mcq.acc": 1.0, "retain.vqa.gen.rougeL": 0.0}
    assert VISUAL.retention(m) == pytest.approx(5 / (2 + 4))
    assert VISUAL.retention({"retain.vqa.mcq.acc": 0.5, "utility.vqa.mcq.acc": 0.25}) == pytest.approx(1 / 3)
    assert VISUAL.retention(m | {"real.vqa.mcq.acc": 0.0}) == 0.0
    assert VISUAL.retention({}) is None


def test_aggregates_are_per_run_then_mean_over_seeds(runs):
    ga = rows(group(runs))["ga"]
    fe = [VISUAL.forget_efficacy(metrics(f, r)) for f, r in [(0.1, 0.7), (0.2, 0.8), (0.3, 0.9)]]
    re_ = [VISUAL.retention(metrics(f, r)) for f, r in [(0.1, 0.7), (0.2, 0.8), (0.3, 0.9)]]
    assert fe == pytest.approx([1.0, 1.0, 0.7 / 0.75])
    assert ga.mean["forget_efficacy"] == pytest.approx(sum(fe) / 3)
    assert ga.mean["retention"] == pytest.approx(sum(re_) / 3)
    m = sum(re_) / 3
    assert ga.std["retention"] == pytest.approx(math.sqrt(sum((v - m) ** 2 for v in re_) / 2))
    ft = rows(group(runs))["finetuned (ref)"]
    assert ft.mean["forget_efficacy"] == pytest.approx(VISUAL.forget_efficacy(FT))
    g = group(runs)
    assert "clip((1 - mean(forget.vqa.mcq.acc, test.vqa.mcq.acc)) / (1 - 0.25), 0, 1)" in g.caption()
    assert "harmonic mean of retain.vqa.mcq.acc" in g.caption() and "ga n=3" in g.caption()


def test_csv_reads_back(runs):
    g = group(runs)
    text = lb.render([g], "csv")
    table = list(csv.DictReader(io.StringIO(text)))
    by = {r["row"]: r for r in table}
    assert set(by) == {"finetuned (ref)", "retrain (ref)", "retrain_visual (ref)", "ga", "npo"}
    assert float(by["ga"]["forget.vqa.mcq.acc_mean"]) == pytest.approx(0.2)
    assert float(by["ga"]["forget.vqa.mcq.acc_std"]) == pytest.approx(0.1)
    assert int(by["ga"]["n"]) == 3 and int(by["ga"]["n_diverged"]) == 0
    assert float(by["ga"]["retention_mean"]) == pytest.approx(rows(g)["ga"].mean["retention"], abs=1e-6)
    assert by["finetuned (ref)"]["kind"] == "reference" and by["finetuned (ref)"]["forget.vqa.mcq.acc_std"] == ""
    assert by["npo"]["benchmark"] == "synthetic" and by["npo"]["forget_split"] == "forget_10"
    assert "**" not in text and "±" not in text


def test_latex_is_balanced_booktabs(runs):
    tex = lb.render(lb.aggregate(lb.collect([runs])), "latex")
    assert tex.count(r"\begin{tabular}") == tex.count(r"\end{tabular}") == 1
    assert tex.count(r"\begin{table}") == tex.count(r"\end{table}") == 1
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert rule in tex
    assert tex.index(r"\toprule") < tex.index(r"\midrule") < tex.index(r"\bottomrule")
    assert r"\textbf{0.200 $\pm$ 0.100}" in tex
    assert r"retrain\_visual (ref)" in tex and r"forget\_10" in tex
    body = tex[tex.index(r"\toprule"):tex.index(r"\bottomrule")]
    assert "_" not in body.replace(r"\_", "")        # every underscore escaped
    assert r"$\downarrow$" in tex and r"$\uparrow$" in tex
    assert tex.count("{") == tex.count("}")
    ncols = len(lb.aggregate(lb.collect([runs]))[0].keys) + 2
    rows_ = [ln for ln in body.splitlines() if ln.endswith(r"\\")]
    assert all(ln.count(" & ") == ncols - 1 for ln in rows_)


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.stack, self.bold = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack.pop() == tag

    def handle_data(self, data):
        if self.stack and self.stack[-1] == "b":
            self.bold.append(data)


def test_html_parses(runs):
    text = lb.render(lb.aggregate(lb.collect([runs])), "html")
    p = _Tags()
    p.feed(text)
    p.close()
    assert not p.stack
    assert "table" in p.tags and "h3" in p.tags and p.tags.count("tr") == 6
    assert "0.200 ± 0.100" in p.bold


def test_markdown_has_heading_and_caption(runs):
    md = lb.render(lb.aggregate(lb.collect([runs])), "md")
    assert md.startswith("### synthetic / tiny-llava / setting visual / static / forget_10\n")
    assert "forget efficacy = clip(" in md and "Mean ± std over seeds" in md
    with pytest.raises(MMUError, match="unknown leaderboard format"):
        lb.render([], "pdf")


def test_bad_files_are_reported_and_skipped(runs, capsys):
    bad = runs / "synthetic" / "tiny-llava" / "ga" / "static" / "forget_5" / "seed0"
    bad.mkdir(parents=True)
    (bad / "metrics.json").write_text('{"status": "finished", "metr')
    (bad / "config.json").write_text("{}")
    foreign = runs / "elsewhere" / "metrics.json"
    foreign.parent.mkdir()
    foreign.write_text(json.dumps({"accuracy": 0.9}))
    lonely = make_run(runs, "kl_min", 0, metrics())
    (lonely / "config.json").unlink()
    unfinished = make_run(runs, "cvf", 0, metrics(), status="running")
    records = lb.collect([runs])
    err = capsys.readouterr().err
    assert sorted({r.method for r in records}) == ["ga", "npo"] and len(records) == 4
    lines = err.strip().splitlines()
    assert len(lines) == 4
    assert any(str(bad / "metrics.json") in ln and "not valid JSON" in ln for ln in lines)
    assert any(str(foreign) in ln and "no 'metrics'" in ln for ln in lines)
    assert any(str(lonely / "metrics.json") in ln and "config.json" in ln for ln in lines)
    assert any(str(unfinished / "metrics.json") in ln and "unfinished" in ln for ln in lines)
    seen = []
    lb.collect([runs], warn=seen.append)
    assert len(seen) == 4
    with pytest.raises(MMUError, match="no such file"):
        lb.collect([runs / "nope"])
    with pytest.raises(MMUError, match="no finished runs"):
        lb.aggregate(lb.collect([foreign]))


def test_mixing_different_reference_rows_is_refused(runs):
    other_ref = REFERENCE | {"finetuned": FT | {"retain.vqa.mcq.acc": 0.97}}
    p = make_run(runs, "kl_min", 0, metrics(), reference=other_ref)
    with pytest.raises(MMUError) as e:
        lb.aggregate(lb.collect([runs]))
    msg = str(e.value)
    assert str(p) in msg and "reference rows differ" in msg and "finetuned retain.vqa.mcq.acc" in msg
    assert str(runs / "synthetic" / "tiny-llava") in msg.split(" and ")[0]


def test_duplicates(runs, tmp_path):
    copy = tmp_path / "copy"
    make_run(copy, "ga", 0, metrics(0.1, 0.7))                    # the same result again: kept once
    assert rows(lb.aggregate(lb.collect([runs, copy]))[0])["ga"].n == 3
    clash = tmp_path / "clash"
    make_run(clash, "ga", 0, metrics(0.5, 0.7))
    with pytest.raises(MMUError, match="two different results for ga seed 0"):
        lb.aggregate(lb.collect([runs, clash]))


def test_labels_groups_and_diverged(tmp_path):
    make_run(tmp_path, "ga", 0, metrics(0.0, 0.99), method_dir="ga-cb6a52bb")
    make_run(tmp_path, "ga", 0, metrics(0.2, 0.8))
    make_run(tmp_path, "npo", 0, metrics(0.05, 0.99), status="diverged")
    make_run(tmp_path, "npo", 1, metrics(0.3, 0.8))
    make_run(tmp_path, "retrain", 0, dict(REFERENCE["retrain"]))
    make_run(tmp_path, "ga", 0, metrics(0.2, 0.8), split="forget_5")
    groups = lb.aggregate(lb.collect([tmp_path]))
    assert [g.forget_split for g in groups] == ["forget_5", "forget_10"]  # by the split's number
    g = groups[1]
    r = rows(g)
    assert [row.label for row in g.rows][3:] == ["ga", "ga-cb6a52bb", "npo", "retrain"]
    assert r["npo"].n == 2 and r["npo"].n_diverged == 1 and not r["npo"].ranked
    assert not r["retrain"].ranked                               # the pseudo-method is not ranked
    assert g.best("forget.vqa.mcq.acc") == {"ga-cb6a52bb"}       # not the diverged npo (0.175 mean)
    md = lb.render(groups, "md")
    assert "npo (diverged 1/2)" in md and "Rows marked 'diverged'" in md
    assert md.count("### ") == 2


def test_keys_option_and_continual_defaults(tmp_path):
    curves = {"forget": [[0.3], [0.3, 0.2]], "retain": [0.9, 0.8], "real": [1, 1], "utility": [1, 1]}
    cm = metrics() | {"continual.forget_acc_mean": 0.25, "continual.retention_final": 0.8,
                      "continual.retention_auc": 0.85, "continual.rebound_max": 0.0}
    make_run(tmp_path, "ga", 0, cm, protocol="continual", protocol_dir="continual-requests2", curves=curves)
    make_run(tmp_path, "ga", 1, cm, protocol="continual", protocol_dir="continual-requests2",
             curves=curves | {"retain": [0.7, 0.6]})
    g = group(tmp_path)
    assert g.protocol == "continual-requests2" and g.protocol_kind == "continual"
    assert g.keys[:4] == ["continual.forget_acc_mean", "continual.retention_final", "continual.retention_auc",
                          "continual.rebound_max"]
    assert g.curves["ga"] == pytest.approx([0.8, 0.7])
    g = group(tmp_path, keys=["retain.vqa.mcq.acc", "continual.rebound_max"])
    assert g.keys == ["retain.vqa.mcq.acc", "continual.rebound_max", "forget_efficacy", "retention"]
    with pytest.raises(MMUError, match="retain.vqa.mcq.ac.*Did you mean 'retain.vqa.mcq.acc'"):
        group(tmp_path, keys=["retain.vqa.mcq.ac"])


def test_plots_are_png(runs, tmp_path):
    curves = {"forget": [[0.3], [0.3, 0.2]], "retain": [0.9, 0.8], "real": [1, 1], "utility": [1, 1]}
    make_run(runs, "ga", 0, metrics(), protocol="continual", curves=curves)
    groups = lb.aggregate(lb.collect([runs]))
    written = lb.plot(groups, tmp_path / "plots")
    names = sorted(p.name for p in written)
    assert names == ["synthetic__tiny-llava__visual__continual__forget_10.curves.png",
                     "synthetic__tiny-llava__visual__continual__forget_10.png",
                     "synthetic__tiny-llava__visual__static__forget_10.png"]
    for p in written:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 1000
    assert sorted(q.name for q in (tmp_path / "plots").iterdir()) == names   # no temporary files left


def test_command(runs, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    lb.add_command(parser.add_subparsers(dest="command"))
    out = tmp_path / "board" / "table.csv"
    args = parser.parse_args(["leaderboard", str(runs), "--format", "csv", "--out", str(out),
                              "--plots", str(tmp_path / "plots"), "--keys", "forget.vqa.mcq.acc"])
    assert args.func(args) == 0
    table = list(csv.DictReader(out.open()))
    assert len(table) == 5 and "forget.vqa.mcq.acc_mean" in table[0] and "retain.vqa.mcq.acc_mean" not in table[0]
    assert (tmp_path / "plots" / "synthetic__tiny-llava__visual__static__forget_10.png").exists()
    args = parser.parse_args(["leaderboard", str(runs)])
    capsys.readouterr()
    assert args.func(args) == 0
    assert capsys.readouterr().out.startswith("### synthetic / tiny-llava / setting visual / static / forget_10")


def test_several_outputs_by_extension_with_sweep_provenance(runs, tmp_path):
    (runs / "sweep-summary.json").write_text(json.dumps({
        "counts": {"ran": 4, "reused": 1, "diverged": 0, "failed": 0}, "seconds": 750.0, "executor": "local",
        "jobs": 2, "hardware": {"cpu": "Test CPU", "cores": 2, "gpus": []}}))
    parser = argparse.ArgumentParser()
    lb.add_command(parser.add_subparsers(dest="command"))
    outs = {ext: tmp_path / f"board.{ext}" for ext in ("md", "csv", "tex", "html")}
    args = parser.parse_args(["leaderboard", str(runs), "--title", "Board"]
                             + [a for p in outs.values() for a in ("--out", str(p))])
    assert args.func(args) == 0
    line = (f"Sweep `{runs / 'sweep-summary.json'}`: 4 ran, 1 reused, 0 diverged, 0 failed in 12.5 min wall "
            f"(local, 2 jobs) on 2 cores (Test CPU), no GPU.")
    md = outs["md"].read_text()
    assert md.startswith(f"# Board\n\n- {line}\n") and "### synthetic / tiny-llava / setting visual / static / forget_10" in md
    assert list(csv.DictReader(outs["csv"].open()))[0]["benchmark"] == "synthetic"   # bare table
    tex = outs["tex"].read_text()
    assert tex.startswith(f"% Board\n% {line}\n") and r"\toprule" in tex
    assert f'<p class="provenance">{html.escape(line)}</p>' in outs["html"].read_text()
    args = parser.parse_args(["leaderboard", str(runs), "--out", str(tmp_path / "a.txt"), "--out", str(outs["md"])])
    with pytest.raises(MMUError, match="a.txt.*extension"):
        args.func(args)


def test_settings_never_share_a_table_and_flip_the_text_arrow(tmp_path):
    make_run(tmp_path, "ga", 0, metrics(0.2), setting="visual")
    make_run(tmp_path, "ga", 0, metrics(0.3) | {"forget.qa.mcq.acc": 0.3}, setting="full")
    groups = lb.aggregate(lb.collect([tmp_path]))
    assert [g.setting.name for g in groups] == ["visual", "full"]
    visual, full = groups
    assert lb.direction("forget.qa.mcq.acc", "visual") == "up" and lb.direction("forget.qa.mcq.acc", "full") == "down"
    md = lb.render(groups, "md")
    assert "forget.qa.mcq.acc ↑" in md and "forget.qa.mcq.acc ↓" in md
    # each setting's aggregates: forget.qa is retention in visual, forget efficacy in full
    assert rows(visual)["ga"].mean["forget_efficacy"] == pytest.approx(VISUAL.forget_efficacy(metrics(0.2)))
    m_full = metrics(0.3) | {"forget.qa.mcq.acc": 0.3}
    assert rows(full)["ga"].mean["forget_efficacy"] == pytest.approx((1 - 0.3) / 0.75)
    assert rows(full)["ga"].mean["retention"] == pytest.approx(FULL.retention(m_full))
    assert "forget.qa.mcq.acc" not in FULL.retention_inputs and "forget.qa.mcq.acc" in VISUAL.retention_inputs
    # the caption names the setting's oracle
    assert "oracle retrain." in full.caption() and "oracle retrain_visual." in visual.caption()


def test_a_leaderboard_of_one_setting_refuses_a_run_of_another(tmp_path):
    make_run(tmp_path, "ga", 0, metrics(0.2), setting="visual")
    full = make_run(tmp_path, "npo", 0, metrics(0.3), setting="full")
    with pytest.raises(MMUError, match=r"is in setting 'full', but this leaderboard is for setting 'visual'") as e:
        lb.aggregate(lb.collect([tmp_path]), setting="visual")
    assert str(full) in str(e.value)
    assert [g.setting.name for g in lb.aggregate(lb.collect([tmp_path / "synthetic" / "tiny-llava" / "full"]),
                                                 setting="full")] == ["full"]


def test_a_run_without_a_setting_is_skipped_with_the_reason(tmp_path):
    make_run(tmp_path, "ga", 0, metrics(0.2), setting=None)
    warned = []
    assert lb.collect([tmp_path], warn=warned.append) == []
    assert "records no unlearning setting" in warned[0]


class _RobustnessPlugin:
    """A third party's protocol with its own columns and metric specs (test only)."""

    class Protocol:
        name = "test_robust"
        description = "a plugin protocol that reports two keys"

        @staticmethod
        def columns(setting):
            return ["robust.leak", "robust.kept", "forget.vqa.mcq.acc"]

    from mmu_bench.hookspecs import hookimpl as _hookimpl

    @_hookimpl
    def mmu_bench_protocols(self):
        return [self.Protocol]

    @_hookimpl
    def mmu_bench_metrics(self):
        from mmu_bench.metrics import MetricSpec

        return [MetricSpec("robust.leak", "forget knowledge that leaks back under the plugin's attack", "down",
                           "test_robust"),
                MetricSpec("robust.kept", "retain knowledge after it", "up", "test_robust")]


@pytest.fixture()
def robust_plugin():
    from mmu_bench import plugins

    plugins.reset()
    pm = plugins.get_plugin_manager()
    pm.register(_RobustnessPlugin(), name="test-robust")
    yield
    pm.unregister(name="test-robust")
    plugins.reset()


def test_a_plugin_metric_is_shown_like_a_builtin(tmp_path, robust_plugin, capsys):
    from mmu_bench.cli import main
    from mmu_bench.report import protocol_columns, results_table

    for seed, (leak, kept) in enumerate([(0.4, 0.9), (0.2, 0.7)]):
        make_run(tmp_path, "ga", seed, metrics(0.3) | {"robust.leak": leak, "robust.kept": kept}, protocol="test_robust")
    make_run(tmp_path, "npo", 0, metrics(0.3) | {"robust.leak": 0.1, "robust.kept": 0.95}, protocol="test_robust")
    g = group(tmp_path)
    # the plugin protocol's declared columns, with the arrows its specs give
    assert g.keys[:3] == ["robust.leak", "robust.kept", "forget.vqa.mcq.acc"]
    assert g.best("robust.leak") == {"npo"} and g.best("robust.kept") == {"npo"}
    md = lb.render([g], "md")
    assert "robust.leak ↓" in md and "robust.kept ↑" in md
    tex = lb.render([g], "latex")
    assert r"robust.leak $\downarrow$" in tex
    # the run table of `mmu-bench run` reads the same specs
    from mmu_bench.settings import VISUAL

    table = results_table({"ga": {"robust.leak": 0.3}}, protocol_columns("test_robust", VISUAL), "visual")
    assert "robust.leak ↓" in table and "robust.kept ↑" in table
    # and `mmu-bench ls metrics` lists them with their plugin
    assert main(["ls", "metrics"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("robust.leak"))
    assert "↓" in line and "test_robust" in line and "test-robust" in line


def test_attacks_table_carries_the_oracles_under_attack_and_voids_failed_sanity(tmp_path):
    """The attacks protocol stores the zoo models' values under each attack apart; the table merges
    them into the reference rows, and a column whose sanity rows fail is named void."""
    from mmu_bench.leaderboard import aggregate, collect, plot, render

    root = tmp_path / "runs"
    attack_ref = {"quant_int4": {"finetuned": {"forget.vqa.acc": 0.99}, "retrain": {"forget.vqa.acc": 0.2},
                                 "retrain_visual": {"forget.vqa.acc": 0.15}},
                  "prefix": {"finetuned": {"turn.forget.vqa.acc": 0.59}, "retrain": {"turn.forget.vqa.acc": 0.15},
                             "retrain_visual": {"turn.forget.vqa.acc": 0.16}}}
    for seed, v in enumerate((0.3, 0.4)):
        p = make_run(root, "ga", seed, metrics(**{"attack.quant_int4.forget.vqa.acc": v,
                                                  "attack.prefix.turn.forget.vqa.acc": v}), protocol="attacks")
        doc = json.loads((p / "metrics.json").read_text())
        doc["protocol"] = {"reference": attack_ref}
        (p / "metrics.json").write_text(json.dumps(doc))
    (g,) = aggregate(collect([root]))
    ft = next(r for r in g.rows if r.label == "finetuned (ref)")
    assert ft.mean["attack.quant_int4.forget.vqa.acc"] == 0.99
    assert set(g.void) == {"attack.prefix.turn.forget.vqa.acc"} and "finetuned 0.59 < 0.8" in g.void[
        "attack.prefix.turn.forget.vqa.acc"]
    assert "Void" in render([g], "md")
    written = [p.name for p in plot([g], tmp_path / "plots")]
    assert f"{g.slug}.attacks.png" in written


def test_a_row_that_missed_the_stopping_target_is_not_ranked(tmp_path):
    from mmu_bench.leaderboard import aggregate, collect

    root = tmp_path / "runs"
    for seed in (0, 1):
        make_run(root, "ga", seed, metrics(retain=0.6, **{"stop.reached": 1.0, "stop.steps": 30.0}),
                 protocol_dir="static-stopforget0.3e5b200")
        make_run(root, "npo", seed, metrics(retain=0.99, **{"stop.reached": float(seed == 0), "stop.steps": 200.0}),
                 protocol_dir="static-stopforget0.3e5b200")
    (g,) = aggregate(collect([root]))
    assert "stop.reached" in g.keys and g.marks("stop.steps") == {}  # no better direction: never marked
    assert g.best("retain.vqa.mcq.acc") == {"ga"}  # npo keeps more but missed the target in one seed
    assert "Not ranked, since some seed missed the stopping rule's target: npo" in g.caption()
    # and no arrow claims a better side for it, in any format
    md, tex = lb.render([g], "md"), lb.render([g], "latex")
    assert "| stop.steps " in md and "stop.steps ↑" not in md and "retain.vqa.mcq.acc ↑" in md
    assert r"stop.steps $\uparrow$" not in tex and r"stop\_steps $\uparrow$" not in tex


def test_latex_escape_covers_every_special_character():
    # TeX's ten special characters, each to its text-mode form; symbols the tables use go to math mode
    special = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
               "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    for ch, tex in special.items():
        assert lb.latex_escape(f"a{ch}b") == f"a{tex}b"
    assert lb.latex_escape("".join(special)) == "".join(special.values())   # no character escaped twice
    assert lb.latex_escape("0.2 ± 0.1 ≈ → ↑ ↓") == r"0.2 $\pm$ 0.1 $\approx$ $\to$ $\uparrow$ $\downarrow$"
    assert lb.latex_escape("ga-cb6a52bb (ref) 1.0 <x>") == "ga-cb6a52bb (ref) 1.0 <x>"


def test_runs_frame_is_runs_by_metrics(runs):
    records = lb.collect([runs])
    frame = lb.runs_frame(records)
    assert list(frame.index.names) == list(lb.FRAME_INDEX) == ["benchmark", "model", "setting", "protocol",
                                                               "split", "method", "seed"]
    assert len(frame) == 4 and list(frame.columns) == sorted(metrics())
    assert frame.loc[("synthetic", "tiny-llava", "visual", "static", "forget_10", "ga", 1), "forget.vqa.mcq.acc"] == 0.2
    with_agg = lb.runs_frame(records, lambda r: lb.with_aggregates(r.metrics, VISUAL))
    assert {"forget_efficacy", "retention"} <= set(with_agg.columns)
    assert lb.runs_frame([]).empty


def test_the_api_names_are_the_functions_not_their_modules(runs):
    lb.render(lb.aggregate(lb.collect([runs])), "html")   # loads the html module on first use
    for name in ("collect", "aggregate", "render", "provenance", "plot", "with_aggregates", "add_command"):
        assert callable(getattr(lb, name)) and getattr(lb, name).__name__ == name
