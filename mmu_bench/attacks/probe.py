"""Knowledge probes on the language model's hidden states (not identity classifiers).

Unlearning may hide knowledge from the output while it is still decodable inside the model
(Patil et al. 2023, "Can sensitive information be deleted from LLMs?"; Lynch et al. 2024). Two
probes, per layer of the language model (layer 0 = the input embeddings, layer L = the last):

- **logit lens**: the frozen final norm + LM head applied to layer l's hidden states at the
  answer positions; each mcq option is scored by its summed token log-probs under that read-out,
  the argmax is the prediction. At the last layer this is the model's own mcq answer.
- **linear readout**: a scikit-learn LogisticRegression trained on the RETAIN entities' items to
  tell the correct option from the wrong ones, applied to the forget entities' items (the option
  with the highest decision value is the prediction). Its features are answer-agnostic, so a
  readout trained on other entities can name a forget entity's answer: for each option, the mean
  over the option's tokens of ``norm(h_l[t]) * W_out[token_{t+1}]`` (element-wise: the hidden state
  at each position that predicts an option token times that token's output embedding). The logit
  lens is this readout with every weight 1; the trained weights can find knowledge in directions
  the frozen head no longer reads. (A per-fact classifier from the answer-position state to the
  gold word, tried first, cannot generalise: each word is the answer of two or three retain
  entities, and it scored 0.49 on the finetuned model of the default world.)

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


def option_passes(adapter, items: Sequence[dict], batch_size: int = 64, features: bool = True
                  ) -> tuple[np.ndarray, np.ndarray | None]:
    """One teacher-forced pass per option of every item, per layer (0 = embeddings, L = last):

    - logit-lens scores ``(layers + 1, items, options)``: summed option-token log-probs when the
      final norm and the LM head read that layer (the last layer's read-out is the model's own
      logits; transformers returns the last hidden state already normed);
    - readout features ``(layers + 1, items, options, hidden)`` (None unless ``features``): the
      mean over option positions of the normed hidden state times the next token's output embedding.
    """
    norm, head = _lm_parts(adapter)
    k = len(items[0]["options"])
    flat = [it for it in items for _ in it["options"]]
    enc = adapter.encode(flat, answers=[o for it in items for o in it["options"]])
    enc = [Encoded(e.prompt_ids, e.target_ids[:-1], e.pixel_values) for e in enc]  # no eos: options as mcq scores them
    out_emb = head.weight
    adapter.model.eval()
    scores: list[np.ndarray] = []
    feats: list[np.ndarray] = []
    with torch.no_grad():
        for chunk, hs, logits in _forward_states(adapter, enc, batch_size):
            n_layers = len(hs)
            sc = np.zeros((n_layers, len(chunk)))
            ft = np.zeros((n_layers, len(chunk), hs[0].shape[-1]), dtype=np.float32) if features else None
            for r, e in enumerate(chunk):
                p = len(e.prompt_ids)
                pos = torch.arange(p - 1, p - 1 + len(e.target_ids), device=logits.device)  # positions predicting the option
                tgt = torch.tensor(e.target_ids, device=logits.device)
                for layer in range(n_layers):
                    last = layer == n_layers - 1
                    h = hs[layer][r, pos] if last else norm(hs[layer][r, pos])
                    lg = logits[r, pos] if last else head(h)
                    sc[layer, r] = float(torch.log_softmax(lg.float(), -1).gather(-1, tgt[:, None]).sum())
                    if features:
                        ft[layer, r] = (h.float() * out_emb[tgt].float()).mean(0).cpu().numpy()
            scores.append(sc)
            if features:
                feats.append(ft)
    flat_scores = np.concatenate(scores, axis=1)
    lens = flat_scores.reshape(flat_scores.shape[0], len(items), k)
    if not features:
        return lens, None
    f = np.concatenate(feats, axis=1)
    return lens, f.reshape(f.shape[0], len(items), k, f.shape[-1])


def lens_option_scores(adapter, items: Sequence[dict], batch_size: int = 64) -> np.ndarray:
    """Logit-lens score of every option of every item per layer: (layers + 1, items, options)."""
    return option_passes(adapter, items, batch_size, features=False)[0]


def readout_accuracy(train_x: np.ndarray, train_gold: Sequence[int], test_x: np.ndarray,
                     test_gold: Sequence[int], seed: int = 0) -> float:
    """Accuracy of one layer's readout: ``train_x`` / ``test_x`` are (items, options, features);
    a standardised logistic regression learns "this option is the correct one" on the training
    items, and each test item's prediction is its option with the highest decision value."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n, k, d = train_x.shape
    y = (np.arange(k)[None, :] == np.asarray(train_gold)[:, None]).astype(int).ravel()
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=1.0, random_state=seed))
    clf.fit(train_x.reshape(n * k, d), y)
    dec = clf.decision_function(test_x.reshape(-1, d)).reshape(len(test_x), k)
    return float((dec.argmax(1) == np.asarray(test_gold)).mean())


class ProbeAttack(Attack):
    """``attack.probe.*``: ``lens.<vqa|qa>.layer<l>.acc`` / ``.best_acc`` / ``.best_layer``,
    ``readout.vqa.layer<l>.acc`` / ``.best_acc`` / ``.best_layer`` / ``.coverage``."""

    name = "probe"
    description = "logit lens and linear readout of the forget answers from hidden states, per layer"
    headline = "readout.vqa.best_acc"
    version = 2  # 2: answer-agnostic option features for the readout (was: answer-position state -> gold word)
    #: retain items the readout trains on (a seeded sample; features are layers x options x hidden each)
    readout_train_items = 600

    def measure(self, model, ctx: AttackContext) -> dict[str, Any]:
        out: dict[str, Any] = {}
        bs = ctx.eval_cfg.batch_size
        forget_vqa = ctx.items("forget", "vqa")
        for modality in ("vqa", "qa"):
            items = ctx.items("forget", modality)
            if not items:
                continue
            sc, feats = option_passes(model, items, bs, features=modality == "vqa")
            gold = np.array([it["answer_index"] for it in items])
            accs = [(sc[layer].argmax(-1) == gold).mean() for layer in range(sc.shape[0])]
            self._summarise(out, f"lens.{modality}", accs)
            if modality == "vqa":
                test_x, test_gold = feats, gold
        # readout: trained on (a seeded sample of) the retain entities' vqa items, tested on the forget ones
        train = ctx.items("retain", "vqa")
        if train and forget_vqa:
            if len(train) > self.readout_train_items:
                pick = np.random.default_rng(ctx.seed).choice(len(train), self.readout_train_items, replace=False)
                train = [train[i] for i in sorted(pick)]
            _, train_x = option_passes(model, train, bs)
            train_gold = [it["answer_index"] for it in train]
            accs = [readout_accuracy(train_x[layer], train_gold, test_x[layer], test_gold, ctx.seed)
                    for layer in range(train_x.shape[0])]
            self._summarise(out, "readout.vqa", accs)
            out["readout.vqa.train_items"] = len(train)
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
