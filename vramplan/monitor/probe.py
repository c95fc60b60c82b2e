"""``vramplan probe``: find the largest micro-batch that really fits, and hold it against the estimate.

Owns the device-independent half of the probe:

- ``search_largest``: exponential growth of the micro-batch until the first OOM, then binary search
  between the last fit and the first OOM (so a true limit of 100 is found as 100, not 64: the
  complaint behind accelerate #3650). The trial function decides "fits"; on several ranks it agrees
  across ranks (see ``probe_torch``), the gap Lightning #19789 names;
- ``predicted_largest``: the same search over vramplan's estimate (no device);
- ``launch_command``: the ``torchrun``/``deepspeed`` line that runs the probe on every GPU of a
  multi-GPU scenario;
- ``probe_report``/``render_probe``: measured against predicted at the largest fitting micro-batch.

The half that touches a GPU (building the model from its config with random weights, synthetic
batches, real steps) is ``probe_torch``. Nothing here imports torch.
"""

from __future__ import annotations

import copy
import shlex
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping

from ..report.units import gib


@dataclass(slots=True, kw_only=True)
class TrialResult:
    """One trial: a few real steps at one micro-batch."""

    micro_batch: int
    fits: bool
    peak_allocated_bytes: int | None = None
    peak_reserved_bytes: int | None = None
    device_used_bytes: int | None = None
    """Peak reserved + the memory outside the allocator (CUDA context, NCCL) measured after the trial."""
    step_time_s: float | None = None
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


@dataclass(slots=True, kw_only=True)
class SearchResult:
    """Outcome of ``search_largest``."""

    largest: int
    """Largest micro-batch that fitted (0: not even the smallest one)."""
    capped: bool
    """True when ``limit`` fitted, so the real limit may be higher."""
    trials: list[TrialResult]

    def trial(self, micro_batch: int) -> TrialResult | None:
        """The last trial at ``micro_batch``."""
        found = [t for t in self.trials if t.micro_batch == micro_batch]
        return found[-1] if found else None


def search_largest(trial: Callable[[int], TrialResult], *, start: int = 1, limit: int = 1024) -> SearchResult:
    """Exponential then binary search of the largest micro-batch for which ``trial(mb).fits``."""
    if start < 1 or limit < start:
        raise ValueError(f"need 1 <= start ({start}) <= limit ({limit})")
    trials: list[TrialResult] = []
    lo, hi = 0, None
    mb = start
    while True:
        result = trial(mb)
        trials.append(result)
        if not result.fits:
            hi = mb
            break
        lo = mb
        if mb >= limit:
            return SearchResult(largest=lo, capped=True, trials=trials)
        mb = min(mb * 2, limit)
    lo_bound = lo
    while hi - lo_bound > 1:
        mid = (lo_bound + hi) // 2
        result = trial(mid)
        trials.append(result)
        if result.fits:
            lo_bound = mid
        else:
            hi = mid
    return SearchResult(largest=lo_bound, capped=False, trials=trials)


def _with_micro_batch(data: Mapping[str, Any], micro_batch: int) -> dict[str, Any]:
    out = copy.deepcopy(dict(data))
    out.setdefault("train", {})
    out["train"] = dict(out["train"] or {})
    out["train"]["micro_batch"] = micro_batch
    return out


def predicted_largest(scenario: Mapping[str, Any], *, limit: int = 1024) -> int:
    """Largest micro-batch whose estimate fits the scenario's GPU (0 if none)."""
    from ..api import estimate_from_dict

    def fits(mb: int) -> TrialResult:
        return TrialResult(micro_batch=mb, fits=estimate_from_dict(_with_micro_batch(scenario, mb)).fits_gpu)

    return search_largest(fits, limit=limit).largest


def predicted_at(scenario: Mapping[str, Any], micro_batch: int) -> dict[str, int]:
    """Predicted allocated / reserved / device-used bytes at ``micro_batch``."""
    from ..api import estimate_from_dict

    est = estimate_from_dict(_with_micro_batch(scenario, micro_batch))
    return {"peak_allocated_bytes": est.peak_allocated_bytes, "peak_reserved_bytes": est.peak_reserved_bytes,
            "device_used_bytes": est.device_used_bytes}


def launch_command(engine: str, gpus_per_node: int, nodes: int, probe_args: list[str]) -> str:
    """The launcher line that runs ``vramplan probe`` once per GPU (torchrun, or deepspeed for DeepSpeed)."""
    args = " ".join(shlex.quote(a) for a in probe_args)
    if engine == "deepspeed":
        multi = (f" --num_nodes {nodes} --hostfile hostfile" if nodes > 1 else "")
        return f"deepspeed --num_gpus {gpus_per_node}{multi} --module vramplan probe {args}"
    multi = (f" --nnodes {nodes} --node-rank $NODE_RANK --master-addr $MASTER_ADDR --master-port 29500"
             if nodes > 1 else "")
    return f"torchrun --nproc-per-node {gpus_per_node}{multi} -m vramplan probe {args}"


def probe_report(scenario: Mapping[str, Any], search: SearchResult, device: Mapping[str, Any], *,
                 limit: int, notes: list[str] | None = None) -> dict[str, Any]:
    """Measured vs predicted at the largest fitting micro-batch (and at the scenario's own, if tried)."""
    from .compare import relative_error

    def row(mb: int) -> dict[str, Any] | None:
        t = search.trial(mb)
        if t is None or not t.fits:
            return None
        pred = predicted_at(scenario, mb)
        measured = {k: getattr(t, k) for k in ("peak_allocated_bytes", "peak_reserved_bytes", "device_used_bytes")}
        return {"micro_batch": mb, "measured": measured, "predicted": pred,
                "error": {k: relative_error(measured[k], pred[k]) for k in measured}}

    own = int((scenario.get("train") or {}).get("micro_batch", 1))
    return {
        "device": dict(device),
        "seq_len": int((scenario.get("train") or {}).get("seq_len", 2048)),
        "largest_micro_batch": search.largest,
        "capped_at_limit": search.capped,
        "limit": limit,
        "predicted_largest_micro_batch": predicted_largest(scenario, limit=limit),
        "at_largest": row(search.largest) if search.largest else None,
        "at_scenario_micro_batch": row(own) if own != search.largest else None,
        "trials": [t.as_dict() for t in search.trials],
        "notes": list(notes or []),
        "scenario": scenario,
    }


def render_probe(rep: Mapping[str, Any]) -> str:
    """Text report of ``probe_report``."""
    dev = rep["device"]
    lines = [f"vramplan probe on {dev.get('gpu_name', '?')} x{dev.get('world_size', 1)} "
             f"({gib(dev['capacity_bytes']) if dev.get('capacity_bytes') else '?'} each), seq {rep['seq_len']}"]
    largest = rep["largest_micro_batch"]
    if largest == 0:
        lines.append("Largest micro-batch that fits: none (micro-batch 1 runs out of memory)")
    else:
        more = f" (the limit {rep['limit']} fitted; raise --max-micro-batch)" if rep["capped_at_limit"] else ""
        lines.append(f"Largest micro-batch that fits: {largest}{more}; vramplan predicts "
                     f"{rep['predicted_largest_micro_batch']}")
    lines.append("trials: " + ", ".join(f"{t['micro_batch']}{'' if t['fits'] else ' OOM'}" for t in rep["trials"]))
    for key, title in (("at_largest", "at the largest"), ("at_scenario_micro_batch", "at the scenario's micro-batch")):
        r = rep.get(key)
        if not r:
            continue
        lines.append(f"{title} ({r['micro_batch']}):   measured   predicted   error")
        for metric in ("peak_allocated_bytes", "peak_reserved_bytes", "device_used_bytes"):
            m, p, e = r["measured"][metric], r["predicted"][metric], r["error"][metric]
            lines.append(f"  {metric[:-6]:<20} {gib(m) if m is not None else '-':>11} {gib(p):>11}  "
                         f"{'-' if e is None else f'{e:+.1%}'}")
    for note in rep.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)
