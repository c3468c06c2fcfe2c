"""Null-space projection of weight updates (Adam-NSCL / AlphaEdit / GPM style).

For a linear layer y = W x and retained inputs X (rows x_r), any update dW whose rows lie in the
null space of X (dW = dW P with P = U_0 U_0^T, U_0 the eigenvectors of C = X^T X / N with small
eigenvalues) leaves W x_r unchanged to first order. The projection is applied to the FINAL
optimizer update (AdamW's elementwise rescaling would undo a gradient-only projection).

Variants:
- ``covariance="uncentred"`` (default): C = X^T X / N.
- ``covariance="centred"``: C = cov(X); with bias compensation db = -dW mu the retained outputs
  stay put for inputs near the mean as well (W x + b moves by dW (x - mu)).
- ``subspace="forget_selective"``: instead of a null space, allow only the top generalized
  eigenvectors of (C_forget, C_retain): directions with much more forget than retain energy.

Null-basis rules: ``energy`` (protect the top directions holding 1 - eps of the trace; default),
``relative`` (null where l <= r * l_max) and ``absolute`` (null where l < a). A rule relative to
the SMALLEST eigenvalue (Adam-NSCL) degenerates after LayerNorm (an exactly-zero eigenvalue).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
from torch import nn

from .errors import MMUError

RULES = ("energy", "relative", "absolute")


@dataclass
class Moments:
    """Running sums of a layer's inputs: sum x x^T, sum x and count (float64)."""

    xtx: torch.Tensor
    xsum: torch.Tensor
    n: int = 0

    @classmethod
    def zeros(cls, d: int) -> "Moments":
        return cls(torch.zeros(d, d, dtype=torch.float64), torch.zeros(d, dtype=torch.float64), 0)

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().reshape(-1, x.shape[-1]).to("cpu", torch.float64)
        self.xtx += x.T @ x
        self.xsum += x.sum(0)
        self.n += x.shape[0]

    def mean(self) -> torch.Tensor:
        return self.xsum / max(1, self.n)

    def covariance(self, centred: bool) -> torch.Tensor:
        c = self.xtx / max(1, self.n)
        if centred:
            mu = self.mean()
            c = c - torch.outer(mu, mu)
        return (c + c.T) / 2


def collect_moments(layers: dict[str, nn.Linear], run: Callable[[], None],
                    into: dict[str, Moments] | None = None) -> dict[str, Moments]:
    """Accumulate the inputs every layer sees while ``run()`` executes (forward hooks)."""
    moments = into if into is not None else {n: Moments.zeros(l.in_features) for n, l in layers.items()}
    handles = []
    for name, layer in layers.items():
        def hook(mod, inputs, output, name=name):
            moments[name].add(inputs[0])
        handles.append(layer.register_forward_hook(hook))
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    return moments


def null_basis(cov: torch.Tensor, rule: str = "energy", threshold: float = 0.02) -> torch.Tensor:
    """Orthonormal basis (d, k) of the directions the retained inputs barely use."""
    if rule not in RULES:
        raise MMUError(f"null-space rule {rule!r} unknown; expected one of {', '.join(RULES)}")
    evals, evecs = torch.linalg.eigh(cov)  # ascending
    evals = evals.clamp(min=0)
    if rule == "energy":
        total = float(evals.sum())
        if total <= 0:
            return evecs
        # protect the largest eigenvalues until they hold 1 - threshold of the trace
        desc = torch.flip(evals, [0])
        kept = int((torch.cumsum(desc, 0) / total < 1 - threshold).sum()) + 1
        n_null = evals.numel() - min(kept, evals.numel())
        return evecs[:, :n_null]
    if rule == "relative":
        mask = evals <= threshold * float(evals.max())
    else:
        mask = evals < threshold
    return evecs[:, mask]


def selective_basis(cov_forget: torch.Tensor, cov_retain: torch.Tensor, k: int, ridge: float = 1e-3) -> torch.Tensor:
    """Top-k generalized eigenvectors of (C_f, C_r), orthonormalised: forget-heavy directions."""
    import scipy.linalg

    d = cov_retain.shape[0]
    reg = cov_retain + ridge * float(torch.trace(cov_retain)) / d * torch.eye(d, dtype=cov_retain.dtype)
    evals, evecs = scipy.linalg.eigh(cov_forget.numpy(), reg.numpy())
    top = torch.from_numpy(evecs[:, ::-1][:, :k].copy())
    q, _ = torch.linalg.qr(top)
    return q


@dataclass
class Projection:
    """Per-layer projectors P (d_in x d_in) and the bookkeeping that logs them."""

    layers: dict[str, nn.Linear]
    projectors: dict[str, torch.Tensor] = field(default_factory=dict)
    means: dict[str, torch.Tensor] = field(default_factory=dict)
    null_fraction: dict[str, float] = field(default_factory=dict)
    bias_compensation: bool = False

    def __post_init__(self):
        self._by_param = {id(l.weight): n for n, l in self.layers.items()}

    def apply(self, param: nn.Parameter, delta: torch.Tensor) -> torch.Tensor:
        """Project one parameter's update; other parameters pass through unchanged."""
        name = self._by_param.get(id(param))
        if name is None or name not in self.projectors:
            return delta
        P = self.projectors[name].to(delta.device, delta.dtype)
        projected = delta @ P
        if self.bias_compensation and self.layers[name].bias is not None:
            mu = self.means[name].to(delta.device, delta.dtype)
            self.layers[name].bias.data.add_(-(projected @ mu))
        return projected


def build_projection(layers: dict[str, nn.Linear], retain: dict[str, Moments], *, rule: str = "energy",
                     threshold: float = 0.02, centred: bool = False, bias_compensation: bool = False,
                     selective_k: int = 0, forget: dict[str, Moments] | None = None,
                     warn_below: float = 0.05) -> Projection:
    """Projectors for every layer from the retained moments (and forget moments if selective)."""
    proj = Projection(layers, bias_compensation=bias_compensation)
    collapsed = []
    for name, layer in layers.items():
        cov = retain[name].covariance(centred)
        if selective_k > 0:
            if forget is None:
                raise MMUError("subspace=forget_selective needs forget-data moments")
            basis = selective_basis(forget[name].covariance(centred), cov, min(selective_k, cov.shape[0]))
        else:
            basis = null_basis(cov, rule, threshold)
        proj.projectors[name] = (basis @ basis.T).to(torch.float32)
        proj.means[name] = retain[name].mean().to(torch.float32)
        frac = basis.shape[1] / layer.in_features
        proj.null_fraction[name] = round(frac, 4)
        if frac < warn_below:
            collapsed.append(f"{name} ({frac:.1%})")
    if collapsed:
        warnings.warn(f"null space collapsed below {warn_below:.0%} in {len(collapsed)} layer(s): "
                      f"{', '.join(collapsed[:4])}; loosen the rule's threshold", stacklevel=2)
    return proj


def linear_layers(modules: Iterable[tuple[str, nn.Module]]) -> dict[str, nn.Linear]:
    return {n: m for n, m in modules if isinstance(m, nn.Linear)}
