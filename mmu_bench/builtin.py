"""Core built-ins (protocols, settings and metric specs), registered through the plugin hooks."""

from __future__ import annotations

from .hookspecs import hookimpl
from .metrics import MetricSpec

_FORGET_QA = {"visual": "up", "full": "down"}  # text knowledge of forget entities: kept / forgotten

# Each spec is registered by the stage that produces it; descriptions compose general -> specific.
METRICS = [
    # ---- the evaluator: <split>.<modality>.<kind>.<metric>
    MetricSpec("forget.vqa.*", "forget entities, image questions on the training renderings", "down"),
    MetricSpec("forget.qa.*", "forget entities, text questions that name them (kept in visual, "
               "forgotten in full)", _FORGET_QA),
    MetricSpec("test.*", "forget entities in unseen renderings (does forgetting generalise?)", "down"),
    MetricSpec("retain.*", "retain entities (must be kept)", "up"),
    MetricSpec("real.*", "public figures the base model knew before fine-tuning (must be kept)", "up"),
    MetricSpec("utility.*", "general visual skills: shape, colour, pattern of fresh pictures (must be kept)", "up"),
    MetricSpec("holdout.*", "entities never trained on (membership-inference non-members)", None),
    MetricSpec("*.mcq.acc", "multiple-choice accuracy (loglik: argmax of option log-likelihood; "
               "generate: parsed letter); chance 0.25"),
    MetricSpec("*.mcq.prob", "normalised probability of the gold option, P_gold / sum P (TOFU)"),
    MetricSpec("*.gen.rougeL", "ROUGE-L F of the greedy answer vs the gold (rouge-score, stemming)"),
    MetricSpec("*.gen.rouge1", "ROUGE-1 F of the greedy answer vs the gold"),
    MetricSpec("*.gen.rouge2", "ROUGE-2 F of the greedy answer vs the gold"),
    MetricSpec("*.gen.prob", "answer probability exp(-mean NLL) of the gold answer"),
    MetricSpec("*.cloze.acc", "gold string contained (case-insensitive) in the greedy fill-in (MLLMU-Bench)"),
    # ---- forget quality (mmu_bench/forget_quality.py)
    MetricSpec("forget_quality.*", "closeness of the forget truth-ratio distribution to the retrain "
               "oracle's (TOFU / CLEAR); *_visual: to retrain_visual's", "up", "forget_quality"),
    MetricSpec("forget_quality.ks_p*", "KS-test p-value (high = indistinguishable from the oracle)",
               stage="forget_quality"),
    MetricSpec("forget_quality.js*", "1 - Jensen-Shannon distance of log truth-ratio histograms", stage="forget_quality"),
    # ---- membership inference (mmu_bench/mia.py)
    MetricSpec("mia.*.auc", "membership-inference AUC, forget (members) vs holdout (non-members); "
               "finetuned ~1, a good unlearning ~ the oracle's (~0.5)", "down", "mia"),
    MetricSpec("mia.qa.*.auc", "text-route membership AUC: in the visual setting the text facts stay, so it "
               "should stay high like retrain_visual's; in full it should fall like retrain's",
               {"visual": "up", "full": "down"}, "mia"),
    MetricSpec("mia.*.privleak*", "PrivLeak (MUSE) = (AUC - AUC_oracle) / AUC_oracle x 100 vs retrain; "
               "*_visual vs retrain_visual; 0 ideal, > 0 under-, < 0 over-unlearning", "zero", "mia"),
    # ---- continual (mmu_bench/protocols.py)
    MetricSpec("continual.forget_acc_mean", "forget vqa mcq acc averaged over all requests, at the end", "down", "continual"),
    MetricSpec("continual.retention_final", "retain vqa mcq acc at the end / the finetuned model's", "up", "continual"),
    MetricSpec("continual.retention_auc", "area under the retention curve (step axis scaled to [0, 1])", "up", "continual"),
    MetricSpec("continual.rebound_max", "largest rise of an earlier request's forget acc after it was unlearned",
               "down", "continual"),
    # ---- relearn (mmu_bench/protocols.py)
    MetricSpec("relearn.*", "relearning attack: forget vqa mcq acc of the held-back entities", "down", "relearn"),
    MetricSpec("relearn.recovery", "(acc after relearn - after unlearn) / (finetuned - after unlearn) "
               "on held-back entities; 0 = nothing came back", "down", "relearn"),
    MetricSpec("relearn.acc_finetuned", "the finetuned model's forget vqa mcq acc on the held-back entities "
               "(the ceiling recovery is measured against)", "up", "relearn"),
    MetricSpec("relearn.acc_attack_entities", "forget vqa mcq acc of the entities the attack trained on "
               "(sanity: the attack itself worked)", "down", "relearn"),
    # ---- matched retention (mmu_bench/matched.py, static --matched-retention)
    MetricSpec("matched.*", "at matched retention: the weight interpolation (1-a) finetuned + a unlearned with the "
               "largest a on the grid that keeps the target share of the finetuned validation retention", None,
               "matched"),
    MetricSpec("matched.forget.*", "forget entities' training renderings at matched retention", "down", "matched"),
    MetricSpec("matched.test.*", "forget entities' unseen renderings at matched retention", "down", "matched"),
    MetricSpec("matched.retain.*", "retain entities at matched retention", "up", "matched"),
    MetricSpec("matched.alpha", "the chosen a (1 = the method's own weights; 0 = the finetuned model)", None, "matched"),
    MetricSpec("matched.val_retain_acc", "validation retain accuracy at the chosen a", None, "matched"),
    # ---- the shared stopping rule (mmu_bench/stopping.py, --stop-at)
    MetricSpec("stop.reached", "1 if the run reached the --stop-at forget target on validation items within "
               "its step budget (a row at matched forgetting needs 1)", None, "stop"),
    MetricSpec("stop.steps", "optimizer steps the run took under the stopping rule (all requests)", None, "stop"),
    # ---- leaderboard aggregates (definitions per setting: mmu_bench/settings.py)
    MetricSpec("forget_efficacy", "clip((1 - mean of the setting's forget accuracies) / 0.75, 0, 1); "
               "1 = chance", "up", "leaderboard"),
    MetricSpec("retention", "harmonic mean of the setting's kept accuracies", "up", "leaderboard"),
]


@hookimpl
def mmu_bench_protocols():
    from .protocols import ContinualProtocol, MIAProtocol, RelearnProtocol, StaticProtocol

    from .attacks.protocol import AttacksProtocol

    return [StaticProtocol, ContinualProtocol, MIAProtocol, RelearnProtocol, AttacksProtocol]


@hookimpl
def mmu_bench_metrics():
    from .attacks import as_metric_specs
    from .official_clear import METRICS as CLEAR_OFFICIAL

    return METRICS + as_metric_specs() + CLEAR_OFFICIAL


@hookimpl
def mmu_bench_settings():
    from .settings import SETTINGS

    return list(SETTINGS)
