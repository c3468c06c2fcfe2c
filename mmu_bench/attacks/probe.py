"""Knowledge probes on the language model's hidden states (not identity classifiers).

Unlearning may hide knowledge from the output while it is still decodable inside the model
(Patil et al. 2023, "Can sensitive information be deleted from LLMs?"; Lynch et al. 2024). Two
probes, per layer of the language model (layer 0 = the input embeddings, layer L = the last):

- **logit lens**: the frozen final norm + LM head applied to layer l's hidden states at the
  answer positions; each mcq option is scored by its summed token log-probs under that read-out,
  the argmax is the prediction. At the last layer this is the model's own mcq answer.
- **linear readout**: per fact (home / job / food / hobby; the name is unique per entity, so no
  classifier trained on other entities could read it), a scikit-learn LogisticRegression maps the
  hidden state at the answer position (the last prompt token: image + question) to the gold answer
  word, trained on the RETAIN entities' items and applied to the forget entities' items: the
  option with the highest predicted probability is the prediction. Items whose gold word never
  occurs among the retain answers cannot be read out and are left out (``coverage``).

Both on the forget entities' mcq items. Valid only if the finetuned model scores high and the
oracle near chance (the sanity rows).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..adapter import Encoded
from .base import HIGH, LOW, ORACLES, Attack, AttackContext, mean

READOUT_FACTS = ("home", "job", "food", "hobby")


def _lm_parts(adapter):
    lm = adapter.model.model.language_model
    norm = getattr(lm, "norm", None)
    if norm is None:
        from ..errors import MMUError

        raise MMUError(f"probe: the language model {type(lm).__name__} has no final norm `.norm`")
    return norm, adapter.model.get_output_embeddings()


def _forward_states(adapter, encoded: Sequence[Encoded], batch_size: int):
    """Yield (batch, hidden_states tuple, logits) for right-padded batches of ``encoded``."""
    with torch.no_grad():
        for i in range(0, len(encoded), batch_size):
            chunk = encoded[i:i + batch_size]
            batch = adapter.collate(chunk)  # prompt + target tokens, right-padded
            batch.pop("labels")
            out = adapter.model(**batch, output_hidden_states=True)
            yield chunk, out.hidden_states, out.logits


def prompt_states(adapter, items: Sequence[dict], batch_size: int = 64) -> np.ndarray:
    """Hidden state at the last prompt token, per layer: (layers + 1, items, hidden)."""
    enc = [Encoded(e.prompt_ids, [], e.pixel_values) for e in adapter.encode(items, answers=[""] * len(items))]
    adapter.model.eval()
    rows: list[list[np.ndarray]] = []
    for chunk, hs, _ in _forward_states(adapter, enc, batch_size):
        last = torch.tensor([len(e.prompt_ids) - 1 for e in chunk], device=hs[0].device)
        ar = torch.arange(len(chunk), device=hs[0].device)
        rows.append([h[ar, last].float().cpu().numpy() for h in hs])
    return np.stack([np.concatenate([r[layer] for r in rows]) for layer in range(len(rows[0]))])


def lens_option_scores(adapter, items: Sequence[dict], batch_size: int = 64) -> np.ndarray:
    """Logit-lens score of every option of every item per layer: (layers + 1, items, options).

    Intermediate layers go through the final norm and the LM head; the last layer's read-out is
    the model's own logits (transformers returns the last hidden state already normed)."""
    norm, head = _lm_parts(adapter)
    k = len(items[0]["options"])
    flat = [it for it in items for _ in it["options"]]
    enc = adapter.encode(flat, answers=[o for it in items for o in it["options"]])
    enc = [Encoded(e.prompt_ids, e.target_ids[:-1], e.pixel_values) for e in enc]  # no eos: options as mcq scores them
    adapter.model.eval()
    scores: list[np.ndarray] = []
    for chunk, hs, logits in _forward_states(adapter, enc, batch_size):
        n_layers = len(hs)
        out = np.zeros((n_layers, len(chunk)))
        for r, e in enumerate(chunk):
            p = len(e.prompt_ids)
            pos = torch.arange(p - 1, p - 1 + len(e.target_ids), device=logits.device)  # positions predicting the option
            tgt = torch.tensor(e.target_ids, device=logits.device)
            for layer in range(n_layers):
                lg = logits[r, pos] if layer == n_layers - 1 else head(norm(hs[layer][r, pos]))
                out[layer, r] = float(torch.log_softmax(lg.float(), -1).gather(-1, tgt[:, None]).sum())
        scores.append(out)
    flat_scores = np.concatenate(scores, axis=1)
    return flat_scores.reshape(flat_scores.shape[0], len(items), k)


def readout_accuracy(train_x: np.ndarray, train_y: Sequence[str], test_x: np.ndarray,
                     test_items: Sequence[dict], seed: int = 0) -> tuple[float, float]:
    """(accuracy, coverage) of one layer's readout for one fact: a standardised logistic
    regression on the training states, the test item's best-scored option as its prediction."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classes = sorted(set(train_y))
    keep = [i for i, it in enumerate(test_items) if it["answer"] in classes]
    if len(classes) < 2 or not keep:
        return float("nan"), 0.0
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0, random_state=seed))
    clf.fit(train_x, list(train_y))
    proba = clf.predict_proba(test_x[keep])
    col = {c: j for j, c in enumerate(clf.classes_)}
    hits = []
    for row, i in zip(proba, keep):
        it = test_items[i]
        s = [row[col[o]] if o in col else -1.0 for o in it["options"]]
        hits.append(int(np.argmax(s)) == it["answer_index"])
    return float(np.mean(hits)), len(keep) / len(test_items)


class ProbeAttack(Attack):
    """``attack.probe.*``: ``lens.<vqa|qa>.layer<l>.acc`` / ``.best_acc`` / ``.best_layer``,
    ``readout.vqa.layer<l>.acc`` / ``.best_acc`` / ``.best_layer`` / ``.coverage``."""

    name = "probe"
    description = "logit lens and linear readout of the forget answers from hidden states, per layer"
    headline = "readout.vqa.best_acc"
    version = 1

    def measure(self, model, ctx: AttackContext) -> dict[str, Any]:
        out: dict[str, Any] = {}
        bs = ctx.eval_cfg.batch_size
        for modality in ("vqa", "qa"):
            items = ctx.items("forget", modality)
            if not items:
                continue
            sc = lens_option_scores(model, items, bs)
            gold = np.array([it["answer_index"] for it in items])
            accs = [(sc[layer].argmax(-1) == gold).mean() for layer in range(sc.shape[0])]
            self._summarise(out, f"lens.{modality}", accs)
        # readout: retain vqa items train, forget vqa items test, one classifier per fact
        train = [it for it in ctx.items("retain", "vqa") if it["fact"] in READOUT_FACTS]
        test = [it for it in ctx.items("forget", "vqa") if it["fact"] in READOUT_FACTS]
        if train and test:
            tr_x, te_x = prompt_states(model, train, bs), prompt_states(model, test, bs)
            accs, covered = [], 0.0
            for layer in range(tr_x.shape[0]):
                hits, n_cov = [], 0
                for fact in READOUT_FACTS:
                    tri = [i for i, it in enumerate(train) if it["fact"] == fact]
                    tei = [i for i, it in enumerate(test) if it["fact"] == fact]
                    if not tri or not tei:
                        continue
                    acc, cov = readout_accuracy(tr_x[layer][tri], [train[i]["answer"] for i in tri],
                                                te_x[layer][tei], [test[i] for i in tei], ctx.seed)
                    n = round(cov * len(tei))
                    if n:
                        hits.append(acc * n)
                        n_cov += n
                accs.append(sum(hits) / n_cov if n_cov else float("nan"))
                covered = n_cov / len(test)
            self._summarise(out, "readout.vqa", accs)
            out["readout.vqa.coverage"] = round(covered, 6)
        return out

    @staticmethod
    def _summarise(out: dict, prefix: str, accs: list[float]) -> None:
        for layer, a in enumerate(accs):
            out[f"{prefix}.layer{layer}.acc"] = round(float(a), 6)
        best = int(np.nanargmax(accs)) if not all(np.isnan(accs)) else -1
        out[f"{prefix}.best_acc"] = round(float(accs[best]), 6) if best >= 0 else float("nan")
        out[f"{prefix}.best_layer"] = best

    def sanity(self, reference, setting):
        # both probes must separate the finetuned model from the oracle (on the image route,
        # which neither oracle ever saw for the forget entities)
        oracle = ORACLES[setting]
        problems = []
        for key in ("lens.vqa.best_acc", "readout.vqa.best_acc"):
            ft, orc = reference["finetuned"].get(key, float("nan")), reference[oracle].get(key, float("nan"))
            if not ft >= HIGH:
                problems.append(f"finetuned {key} = {ft:.3f} < {HIGH}")
            if not orc <= LOW:
                problems.append(f"{oracle} {key} = {orc:.3f} > {LOW}")
        return {"metric": "lens.vqa.best_acc, readout.vqa.best_acc",
                "finetuned": [reference["finetuned"].get(k) for k in ("lens.vqa.best_acc", "readout.vqa.best_acc")],
                "oracle": [reference[oracle].get(k) for k in ("lens.vqa.best_acc", "readout.vqa.best_acc")],
                "oracle_model": oracle, "ok": not problems, "problems": problems}


def plot_probe(method: dict, reference: dict, path: Path, label: str, oracle: str) -> None:
    """Per-layer accuracy of both probes (vqa) for the method, the finetuned model and the oracle."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, probe in zip(axes, ("lens.vqa", "readout.vqa")):
        for name, vals, style in ((label, method, "o-"), ("finetuned", reference.get("finetuned", {}), "s--"),
                                  (oracle, reference.get(oracle, {}), "^:")):
            layers = sorted(int(k.split(".layer")[1].split(".")[0]) for k in vals
                            if k.startswith(probe + ".layer"))
            if layers:
                ax.plot(layers, [vals[f"{probe}.layer{l}.acc"] for l in layers], style, label=name)
                ax.set_xticks(layers)
        ax.axhline(0.25, color="grey", ls=":", lw=1, label="chance")
        ax.set(title=f"{probe.replace('.vqa', '')}: forget vqa mcq acc per layer", xlabel="LLM layer (0 = embeddings)",
               ylabel="acc", ylim=(0, 1.05))
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
