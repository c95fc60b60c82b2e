"""Scenario -> accelerate config (YAML dict) for FSDP / FSDP2 plans, as ``accelerate launch --config_file`` reads it.

Keys follow accelerate's ``commands/config/cluster.py`` questionnaire and ``FullyShardedDataParallelPlugin``
(accelerate 1.x, utils/dataclasses.py):

- ``fsdp_version`` 1 or 2; the sharding strategy goes in ``fsdp_reshard_after_forward``: a strategy
  name for FSDP1 (``FULL_SHARD``, ``SHARD_GRAD_OP``, ``HYBRID_SHARD``), a bool for FSDP2 (True =
  full-shard, False = shard-grad-op; hybrid uses ``parallelism_config`` replicate x shard sizes);
- ``TRANSFORMER_BASED_WRAP`` with the model's decoder layer class (one FSDP unit per layer, as the
  estimator assumes), or ``SIZE_BASED_WRAP`` when the class is unknown;
- ``fsdp_offload_params`` for CPU offload (FSDP offloads params, grads and the optimizer step together);
- ``mixed_precision``: ``bf16``/``fp16`` (accelerate keeps fp32 master params), ``no`` for pure bf16
  (the model must be loaded in bf16);
- ``fsdp_activation_checkpointing`` stays False: the launch script turns on HF's
  ``--gradient_checkpointing`` instead (one checkpoint per decoder layer, like the estimator);
- tensor parallelism (FSDP2 only): ``parallelism_config_tp_size`` with ``dp_shard_size`` = world / tp.
"""

from __future__ import annotations

from typing import Any

from ..core.errors import VramplanError
from ..core.scenario import Engine, FsdpSharding, Offload, Precision, Scenario

SIZE_WRAP_MIN_PARAMS = 100_000_000


def mixed_precision_value(scn: Scenario) -> str:
    """accelerate's ``mixed_precision``: bf16 / fp16 autocast, or ``no`` (pure bf16 or fp32)."""
    p = scn.train.precision
    if p is Precision.BF16_MIXED:
        return "bf16"
    if p is Precision.FP16_MIXED:
        return "fp16"
    return "no"


def emit_accelerate_config(scn: Scenario) -> dict[str, Any]:
    """The accelerate config dict of an FSDP/FSDP2 scenario (module docstring)."""
    par, cl = scn.parallel, scn.cluster
    if par.engine not in (Engine.FSDP, Engine.FSDP2):
        raise VramplanError(f"parallel.engine={par.engine.value}: an accelerate config is only written for fsdp/fsdp2 plans")
    version = 2 if par.engine is Engine.FSDP2 else 1
    offload = par.offload_param is not Offload.NONE or par.offload_optimizer is not Offload.NONE
    fsdp: dict[str, Any] = {"fsdp_version": version}
    if version == 1:
        fsdp["fsdp_reshard_after_forward"] = par.fsdp_sharding.value.upper().replace("-", "_")
    else:
        fsdp["fsdp_reshard_after_forward"] = par.fsdp_sharding is not FsdpSharding.SHARD_GRAD_OP
    layer = scn.model.decoder_layer_class
    if layer:
        fsdp["fsdp_auto_wrap_policy"] = "TRANSFORMER_BASED_WRAP"
        fsdp["fsdp_transformer_layer_cls_to_wrap"] = layer
    else:
        fsdp["fsdp_auto_wrap_policy"] = "SIZE_BASED_WRAP"
        fsdp["fsdp_min_num_params"] = SIZE_WRAP_MIN_PARAMS
    fsdp["fsdp_offload_params"] = offload
    fsdp["fsdp_state_dict_type"] = "SHARDED_STATE_DICT"
    fsdp["fsdp_cpu_ram_efficient_loading"] = True
    if version == 1:
        fsdp["fsdp_sync_module_states"] = True
        fsdp["fsdp_use_orig_params"] = True
        fsdp["fsdp_backward_prefetch"] = "BACKWARD_PRE"
        fsdp["fsdp_forward_prefetch"] = False
    fsdp["fsdp_activation_checkpointing"] = False
    cfg: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "debug": False,
        "distributed_type": "FSDP",
        "downcast_bf16": "no",
        "enable_cpu_affinity": False,
        "fsdp_config": fsdp,
        "machine_rank": 0,
        "main_training_function": "main",
        "mixed_precision": mixed_precision_value(scn),
        "num_machines": cl.nodes,
        "num_processes": cl.world_size,
        "rdzv_backend": "static",
        "same_network": True,
        "tpu_env": [],
        "tpu_use_cluster": False,
        "tpu_use_sudo": False,
        "use_cpu": False,
    }
    if version == 2 and (par.tp > 1 or par.fsdp_sharding is FsdpSharding.HYBRID_SHARD):
        replicate = cl.nodes if par.fsdp_sharding is FsdpSharding.HYBRID_SHARD else 1
        cfg["parallelism_config"] = {
            "parallelism_config_dp_replicate_size": replicate,
            "parallelism_config_dp_shard_size": cl.world_size // (par.tp * replicate),
            "parallelism_config_tp_size": par.tp,
            "parallelism_config_cp_size": 1,
        }
    return cfg
