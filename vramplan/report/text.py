"""Estimate -> a readable terminal table."""

from __future__ import annotations

from ..core.breakdown import HOST_KEYS, KEYS
from ..core.estimate import Estimate
from ..core.scenario import Engine, Method, Scenario
from .units import gib, gib_num, params


def describe_setup(scn: Scenario) -> str:
    """One line: engine, precision, batch, sequence, checkpointing, attention."""
    t, p, _c = scn.train, scn.parallel, scn.cluster
    if p.engine is Engine.DEEPSPEED:
        engine = f"DeepSpeed ZeRO-{p.zero}"
        offload = [f"{what} offload {dev.value}" for what, dev in (("optimizer", p.offload_optimizer), ("param", p.offload_param)) if dev.value != "none"]
        if offload:
            engine += " + " + ", ".join(offload)
    elif p.engine in (Engine.FSDP, Engine.FSDP2):
        engine = f"{p.engine.value.upper()} {p.fsdp_sharding.value}"
        if p.offload_param.value != "none" or p.offload_optimizer.value != "none":
            engine += " + CPU offload"
    else:
        engine = p.engine.value.upper() if p.engine is Engine.DDP else "single GPU"
    par = [f"{k}={v}" for k, v in (("tp", p.tp), ("pp", p.pp), ("ep", p.ep)) if v > 1]
    method = t.method.value
    if t.method in (Method.LORA, Method.QLORA):
        method += f" r={t.lora.r}"
    global_batch = t.micro_batch * t.grad_accum * scn.dp_degree
    parts = [
        engine + (" " + " ".join(par) if par else ""),
        method,
        t.precision.value,
        t.optimizer.value,
        f"micro-batch {t.micro_batch} x accum {t.grad_accum} x {scn.dp_degree} DP = global {global_batch}",
        f"seq {t.seq_len}",
        f"ckpt {t.grad_ckpt.value}",
        t.attention.value,
    ]
    if t.loss.value != "standard":
        parts.append(f"{t.loss.value} loss")
    return " | ".join(parts)


def render_estimate(est: Estimate, title: str = "vramplan estimate") -> str:
    """The default text output of ``vramplan estimate``."""
    scn = est.scenario
    gpu = scn.cluster.gpu
    lines: list[str] = []
    lines.append(
        f"{title}: {scn.model.name} on {scn.cluster.world_size}x {gpu.display_name} "
        f"({gib(est.capacity_bytes)} each)"
    )
    lines.append("  " + describe_setup(scn))
    lines.append("")
    verdict = "FITS" if est.fits else "OOM"
    if est.fits_gpu:
        detail = f"peak {gib(est.device_used_bytes)} per GPU ({est.peak_phase}), usable {gib(est.usable_bytes)}, margin {gib(est.margin_bytes)}"
    else:
        detail = (
            f"needs {gib(est.device_used_bytes)} per GPU at the {est.peak_phase} peak, usable {gib(est.usable_bytes)} "
            f"-> over by {gib(-est.margin_bytes)}"
        )
    lines.append(f"Verdict: {verdict} - {detail}")
    if est.fits_host is False:
        lines.append(
            f"         host RAM: needs {gib(est.host_ram_bytes)} per node, has {gib(scn.cluster.host_ram_bytes or 0)}"
        )
    p = est.params
    lines.append(
        f"Parameters: {params(p.total)} total ({params(p.active)} active), {params(p.trainable)} trainable, "
        f"{params(p.frozen)} frozen"
    )
    lines.append("")
    header = f"{'per GPU':<28}" + "".join(f"{ph.phase:>12}" for ph in est.phases)
    lines.append(header)
    for label, attr in (("allocated", "allocated_bytes"), ("reserved", "reserved_bytes"), ("device used (nvidia-smi)", "device_used_bytes")):
        lines.append(f"  {label:<26}" + "".join(f"{gib_num(getattr(ph, attr)):>12}" for ph in est.phases))
    lines.append("")
    peak = est.peak.breakdown
    total = peak.device_used_bytes or 1
    lines.append(f"Breakdown at the peak ({est.peak_phase}), GiB per GPU")
    for key in KEYS:
        value = peak[key]
        if value:
            lines.append(f"  {key:<32}{gib_num(value):>10}  {100 * value / total:5.1f}%")
    lines.append(f"  {'total (device used)':<32}{gib_num(peak.device_used_bytes):>10}")
    top = sorted(((peak[k], k) for k in KEYS), reverse=True)[:3]
    lines.append("Largest: " + ", ".join(f"{k} {gib(v)}" for v, k in top if v))
    lines.append("")
    avail = scn.cluster.host_ram_bytes
    host_line = f"Host RAM per node: {gib(est.host_ram_bytes)}"
    if avail is not None:
        host_line += f" of {gib(avail)}"
    items = [f"{k.split('/')[1]} {gib_num(est.host[k])}" for k in HOST_KEYS if est.host.get(k)]
    lines.append(host_line + (" (" + ", ".join(items) + ")" if items else ""))
    for note in est.notes:
        lines.append(f"Note: {note}")
    return "\n".join(lines)
