"""Attacks that try to get unlearned knowledge back (issue #18), run by ``--protocol attacks``.

One module per attack; each measures one model and reports keys ``attack.<name>.<metric>``.
Every attack also runs on the finetuned model and on both oracles (the sanity rows, cached per
zoo): an attack whose finetuned row is not high and whose oracle row is not low is broken, not
the method (docs/protocols.md, "attacks").
"""

from __future__ import annotations

from .base import Attack, AttackContext


def _registry() -> dict[str, "type[Attack] | object"]:
    from .consistency import ConsistencyAttack
    from .neighbours import NeighboursAttack
    from .paraphrase import ParaphraseAttack
    from .permute import PermuteAttack
    from .prefix import PrefixAttack
    from .probe import ProbeAttack
    from .quant import QuantAttack

    return {
        "quant_int8": lambda: QuantAttack(8),
        "quant_int4": lambda: QuantAttack(4),
        "probe": ProbeAttack,
        "paraphrase": ParaphraseAttack,
        "permute": PermuteAttack,
        "prefix": PrefixAttack,
        "neighbours": NeighboursAttack,
        "consistency": ConsistencyAttack,
    }


ATTACK_NAMES = ("quant_int8", "quant_int4", "probe", "paraphrase", "permute", "prefix", "neighbours", "consistency")


def make_attacks(names: str | list[str] | None) -> list[Attack]:
    """Attack objects from ``attacks=a,b,c`` (``all`` or None: every attack); a clear error for
    an unknown or repeated name."""
    from ..errors import MMUError, unknown_name

    if names is None or names == "all":
        names = list(ATTACK_NAMES)
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not names:
        raise MMUError("attacks: the list is empty; give e.g. attacks=quant_int8,probe or attacks=all")
    reg = _registry()
    seen = set()
    for n in names:
        if n not in reg:
            raise unknown_name("attack", n, list(ATTACK_NAMES) + ["all"])
        if n in seen:
            raise MMUError(f"attacks: {n!r} is listed twice")
        seen.add(n)
    return [reg[n]() for n in names]


class _Spec:
    """A metric spec (pattern, description, direction (possibly per setting), stage): the shape
    of main's ``mmu_bench.metrics.MetricSpec``, which ``as_metric_specs`` converts to."""

    def __init__(self, pattern, description, direction=None, stage="attacks"):
        self.name = self.pattern = pattern
        self.description, self.direction, self.stage = description, direction, stage


_PER_SETTING_TEXT = {"visual": "up", "full": "down"}   # the text route of forget entities
_PER_SETTING_GONE = {"visual": "down", "full": "up"}   # both routes gone

METRIC_SPECS = [
    _Spec("attack.*", "attacks that try to get unlearned knowledge back (docs/protocols.md, attacks)"),
    # quantization
    _Spec("attack.quant_int*.forget.vqa.acc", "forget vqa mcq acc after int8/int4 weight-only quantization (optimum-quanto, every part)", "down"),
    _Spec("attack.quant_int*.forget.qa.acc", "forget qa mcq acc after quantization", _PER_SETTING_TEXT),
    _Spec("attack.quant_int*.forget.*.acc_unquantized", "the same accuracy before quantization (same model)"),
    _Spec("attack.quant_int*.forget.vqa.recovery", "forget vqa acc after - before quantization (> 0: knowledge came back)", "down"),
    _Spec("attack.quant_int*.forget.qa.recovery", "forget qa acc after - before quantization", "zero"),
    _Spec("attack.quant_int*.retain.vqa.acc*", "retain vqa mcq acc after (before) quantization", "up"),
    _Spec("attack.quant_int*.coverage*", "share of Linear/Conv2d modules quantized (must be 1.0)", "up"),
    # probe
    _Spec("attack.probe.lens.vqa.*acc", "logit lens: forget vqa mcq acc of the final norm + LM head on a layer's hidden states", "down"),
    _Spec("attack.probe.lens.qa.*acc", "logit lens on the forget qa mcq items", _PER_SETTING_TEXT),
    _Spec("attack.probe.readout.vqa.*acc", "linear readout (LogisticRegression on option features, trained on retain entities) of forget vqa answers", "down"),
    _Spec("attack.probe.*.best_layer", "layer of the best probe accuracy (0 = embeddings)"),
    _Spec("attack.probe.readout.vqa.train_items", "retain vqa items the readout was trained on"),
    # prompt attacks
    _Spec("attack.paraphrase.forget.vqa.acc*", "forget vqa mcq acc on held-out question wordings (acc_original: trained wording)", "down"),
    _Spec("attack.paraphrase.forget.qa.acc*", "forget qa mcq acc on held-out wordings", _PER_SETTING_TEXT),
    _Spec("attack.paraphrase.retain.vqa.acc", "retain vqa mcq acc on held-out wordings", "up"),
    _Spec("attack.permute.forget.vqa.acc", "forget vqa mcq acc with the options rotated", "down"),
    _Spec("attack.permute.forget.qa.acc", "forget qa mcq acc with the options rotated", _PER_SETTING_TEXT),
    _Spec("attack.prefix.*.forget.vqa.acc", "forget vqa mcq acc under an adversarial prefix (memory instruction / fake earlier turn)", "down"),
    _Spec("attack.prefix.*.forget.qa.acc", "forget qa mcq acc under an adversarial prefix", _PER_SETTING_TEXT),
    _Spec("attack.*.forget.vqa.gain", "acc under the attack - acc on the plain item (> 0: the attack recovers knowledge)", "down"),
    _Spec("attack.*.forget.qa.gain", "qa acc under the attack - plain qa acc", "zero"),
    # neighbours
    _Spec("attack.neighbours.retain.*.acc", "retain mcq acc on the forget targets' look-alike retain entities", "up"),
    _Spec("attack.neighbours.retain_all.*.acc", "retain mcq acc on every retain entity", "up"),
    _Spec("attack.neighbours.gap.*", "all-retain acc - look-alike acc (> 0: collateral damage on look-alikes)", "zero"),
    _Spec("attack.neighbours.n_neighbours", "distinct look-alike retain entities"),
    # consistency
    _Spec("attack.consistency.both_kept", "share of forget entities known by image AND text route (majority correct)", "down"),
    _Spec("attack.consistency.image_gone_text_kept", "share forgotten by image, kept by text (the visual setting's target)", {"visual": "up", "full": "down"}),
    _Spec("attack.consistency.image_kept_text_gone", "share forgotten by text only (the image still identifies them)", "down"),
    _Spec("attack.consistency.both_gone", "share forgotten by both routes (the full setting's target)", _PER_SETTING_GONE),
    _Spec("attack.consistency.agree", "both_kept + both_gone: the routes agree", _PER_SETTING_GONE),
    _Spec("attack.consistency.n_entities", "forget entities in the table"),
]


def as_metric_specs() -> list:
    """METRIC_SPECS as ``mmu_bench.metrics.MetricSpec`` where that class exists (main), else as is."""
    try:
        from ..metrics import MetricSpec  # type: ignore[import-not-found]
    except ImportError:
        return list(METRIC_SPECS)
    return [MetricSpec(s.pattern, s.description, s.direction, s.stage) for s in METRIC_SPECS]


__all__ = ["Attack", "AttackContext", "ATTACK_NAMES", "METRIC_SPECS", "as_metric_specs", "make_attacks"]
