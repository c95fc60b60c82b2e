"""Doctor rules on the hardware and the launcher (engine-internals.md §8, §9; DeepSpeed's runner).

HW001-HW004: RTX 40xx peer-to-peer, CUDA_VISIBLE_DEVICES ignored by the deepspeed launcher, a process
count different from the script's, host RAM. Pure.
"""

from __future__ import annotations

from ..core.units import GiB
from . import evidence as ev
from ._registry import gib, rule
from .types import Change, DoctorContext, Finding, Fix, Rule, Severity


@rule("HW001", Severity.WARNING, "RTX 40xx GPUs without NCCL_P2P_DISABLE=1",
      "Consumer Ada cards (RTX 4090 ...) have no working peer-to-peer; NCCL hangs or corrupts data with P2P on "
      "(NVIDIA nccl-tests #117, OpenRLHF #1064). NCCL_P2P_DISABLE=1 routes traffic through host memory.",
      ev.NCCL_TESTS_117, ev.OPENRLHF_1064, ev.NCCL_ENV_DOCS)
def rtx40_p2p(ctx: DoctorContext, r: Rule) -> Finding | None:
    gpu = ctx.scenario.cluster.gpu
    if not gpu.is_consumer_ada or ctx.scenario.cluster.gpus_per_node < 2:
        return None
    if ctx.env.get("NCCL_P2P_DISABLE", "").strip().lower() in ("1", "true", "yes"):
        return None
    return r.finding(f"{ctx.scenario.cluster.gpus_per_node}x {gpu.display_name} in one node and NCCL_P2P_DISABLE is "
                     "not set in the script.",
                     Fix("disable NCCL peer-to-peer", (Change("env", "NCCL_P2P_DISABLE", "1"),)))


@rule("HW002", Severity.WARNING, "CUDA_VISIBLE_DEVICES is ignored by the deepspeed launcher",
      "DeepSpeed's runner honours CUDA_VISIBLE_DEVICES only without a hostfile and without --include/--exclude/"
      "--num_gpus/--num_nodes; otherwise it prints a notice and uses its own selection.", ev.DS_RUNNER)
def visible_devices_ignored(ctx: DoctorContext, r: Rule) -> Finding | None:
    launch = ctx.launch
    if launch is None or launch.launcher != "deepspeed":
        return None
    visible = launch.env.get("CUDA_VISIBLE_DEVICES", "").strip()
    if not visible:
        return None
    largs = launch.launcher_args
    nodes = largs.get("num_nodes", "")
    overriding = [k for k in ("include", "exclude", "num_gpus") if largs.get(k)]
    if nodes.isdigit() and int(nodes) > 1:
        overriding.append("num_nodes")
    if launch.hostfile_path:
        overriding.append("hostfile")
    if not overriding:
        return None
    return r.finding(f"CUDA_VISIBLE_DEVICES={visible} is set but --{'/--'.join(overriding)} is given: DeepSpeed uses "
                     f"{launch.gpu_count_source} instead.",
                     Fix("select GPUs with --include", (Change("code", "include",
                                                                f"deepspeed --include localhost:{visible} ..."),)))


@rule("HW003", Severity.INFO, "the run uses a different GPU count than the script was written for",
      "The global batch is micro-batch x gradient accumulation x GPUs; MGM's scripts assume 8, 16 or 32 GPUs "
      "(hostfile, hostfile_4) and say to raise the batch settings when training on one machine.",
      ev.MGM_ISSUE_75, ev.TF_DS_INTEGRATION)
def gpu_count_differs(ctx: DoctorContext, r: Rule) -> Finding | None:
    launch = ctx.launch
    if launch is None or launch.world_size is None or launch.world_size == ctx.world:
        return None
    t = ctx.scenario.train
    intended = t.micro_batch * t.grad_accum * launch.world_size
    now = t.micro_batch * t.grad_accum * ctx.world
    fix = None
    if intended % (t.micro_batch * ctx.world) == 0:
        ga = intended // (t.micro_batch * ctx.world)
        fix = Fix(f"keep the script's global batch {intended}", (Change("script", "gradient_accumulation_steps", str(ga)),))
    return r.finding(f"The script starts {launch.world_size} processes ({launch.gpu_count_source}); this check is for "
                     f"{ctx.world} GPUs, so the global batch is {now} instead of {intended}.", fix)


@rule("HW004", Severity.ERROR, "host RAM is too small",
      "Host RAM holds every process's runtime, the model while it loads (without ZeRO-3 zero.Init each process "
      "materialises it), offloaded optimizer/params (DeepSpeed's 1.5x buffer factor) and ZeRO-3's 16-bit "
      "consolidation at save; a host OOM kills the run with SIGKILL (exit -9), not a CUDA error.",
      ev.DS_STAGE_1_AND_2, ev.DS_STAGE3, ev.PT_ISSUE_95823)
def host_ram(ctx: DoctorContext, r: Rule) -> Finding | None:
    est = ctx.estimate
    if est.fits_host is not False:
        return None
    items = ", ".join(f"{k.split('/')[1]} {v / GiB:.1f}" for k, v in est.host.items() if v)
    assumed = " (assumed; pass --host-ram)" if ctx.host_ram_assumed else ""
    return r.finding(f"The node needs {gib(est.host_ram_bytes)} of host RAM ({items} GiB) but has "
                     f"{gib(ctx.host_ram_bytes)}{assumed}.")
