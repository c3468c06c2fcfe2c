"""Composed protocols (``static+mia+attacks``): one unlearning and one evaluation, then every later
part measures the same model; same numbers as the parts run one by one, filed under each part's
leaderboard table."""

from __future__ import annotations

import pytest

from mmu_bench.errors import MMUError
from mmu_bench.plugins import get_registry
from mmu_bench.report import protocol_columns

from conftest import SMALL_ZOO


def test_registry_composes_parts_and_routes_options():
    cls = get_registry().get("protocols", "static+mia+attacks")
    assert cls.name == "static+mia+attacks" and [p.name for p in cls.parts] == ["static", "mia", "attacks"]
    visual = get_registry().get("settings", "visual")
    cols = protocol_columns("static+mia+attacks", visual)
    for part in ("static", "mia", "attacks"):  # the union of the parts' columns, each once
        assert set(protocol_columns(part, visual)) <= set(cols)
    assert len(cols) == len(set(cols))
    proto = cls(**{"attacks.attacks": "permute", "reference_attack": True})
    static, mia, attacks = proto.instances
    assert [a.name for a in attacks.attacks] == ["permute"]
    assert mia.reference_attack is True and mia.attacks is None  # the qualified option went to attacks only


def test_composed_protocol_errors_name_the_problem():
    cls = get_registry().get("protocols", "static+mia+attacks")
    with pytest.raises(MMUError, match=r"option 'attacks' is taken by more than one .*mia\.attacks, attacks\.attacks"):
        cls(attacks="permute")
    with pytest.raises(MMUError, match="option 'requests' is taken by none of its parts"):
        cls(requests=2)
    with pytest.raises(MMUError, match="'continual' cannot follow another protocol"):
        get_registry().get("protocols", "static+continual")
    with pytest.raises(MMUError, match="distinct protocol names"):
        get_registry().get("protocols", "static+static")
    with pytest.raises(MMUError, match="attacks"):  # an unknown part suggests the closest name
        get_registry().get("protocols", "static+atacks")


def test_composed_run_equals_the_parts_run_alone_and_fills_each_table(cache_dir, small_zoo, tmp_path):
    from mmu_bench.leaderboard.collect import collect
    from mmu_bench.run import RunSpec, prepare, run

    def spec(protocol, options, out):
        return RunSpec(method="ga", protocol=protocol, world_size=20, cache_dir=str(cache_dir), out=str(out),
                       progress=False, max_new_tokens=24, protocol_options=options, zoo=dict(SMALL_ZOO))

    composed = spec("static+mia+attacks", {"attacks.attacks": "permute"}, tmp_path / "composed")
    assert prepare(composed)  # a sweep's prepare step works on the composite (oracle AUCs, sanity rows)
    both = run(composed)
    mia = run(spec("mia", {}, tmp_path / "alone"))
    attacks = run(spec("attacks", {"attacks": "permute"}, tmp_path / "alone"))
    assert any(k.startswith("mia.") for k in both.metrics) and any(k.startswith("attack.permute.") for k in both.metrics)
    assert both.metrics == mia.metrics | attacks.metrics  # deterministic: the same model, the same numbers
    assert both.doc["protocol"]["oracle_auc"] == mia.doc["protocol"]["oracle_auc"]
    assert both.doc["protocol"]["sanity"] == attacks.doc["protocol"]["sanity"]
    assert {"unlearn", "evaluate", "mia", "attack.permute"} <= set(both.doc["timings"])

    recs = collect([tmp_path / "composed"])
    assert sorted(r.protocol for r in recs) == ["attacks-attackspermute", "mia", "static"]
    assert {r.protocol_kind for r in recs} == {"static", "mia", "attacks"}
    alone = {r.protocol: r for r in collect([tmp_path / "alone"])}
    for r in recs:  # the same table a run of that part alone lands in
        if r.protocol in alone:
            assert alone[r.protocol].protocol_kind == r.protocol_kind
    assert set(alone) == {"mia", "attacks-attackspermute"}
    from mmu_bench.leaderboard.provenance import provenance

    assert provenance([], recs + list(alone.values()), "cmd")[0] == \
        "Generated from 3 runs (5 table entries: a composed run counts once per part) by `cmd`."


def test_cli_attacks_flag_goes_to_the_attacks_part():
    from mmu_bench.cli import _protocol_options, build_parser

    def opts(*argv):
        return _protocol_options(build_parser().parse_args(["run", "--method", "ga", *argv]))

    assert opts("--protocol", "static+mia+attacks", "--attacks", "permute") == {"attacks.attacks": "permute"}
    assert opts("--protocol", "static+mia", "--attacks", "loss") == {"mia.attacks": "loss"}
    assert opts("--protocol", "attacks", "--attacks", "permute") == {"attacks": "permute"}
    get_registry().get("protocols", "static+mia+attacks")(**opts("--protocol", "static+mia+attacks",
                                                                  "--attacks", "permute"))
