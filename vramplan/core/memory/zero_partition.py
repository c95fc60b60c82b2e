"""ZeRO-1/2 gradient partition of the most loaded rank, from the trainable parameters' order.

DeepSpeed ``stage_1_and_2.py`` (0.19.8) flattens each optimizer param group separately, padded to a multiple of
``nccl_start_alignment_factor`` (2) x world elements (``flatten_dense_tensors_aligned``), and cuts the flat
group into ``world`` equal partitions (``partition_size = len(flat) // world``). ``get_partition_info`` puts a
parameter in rank r's ``params_in_partition`` when it starts inside the partition or straddles its start, and
``copy_grads_in_partition`` allocates ``grads_in_partition`` with ``total_size += param_in_partition.numel()``
over every group: the WHOLE parameter, not its overlap. A rank therefore holds its Ψ/N plus the parts of the
parameters straddling its partition's ends that belong to its neighbours. This module computes that size
exactly for the most loaded rank (measured on real DeepSpeed ranks: ``vramplan/tracing/deepspeed_cpu.py``).

Parameter order (``named_parameters``, which HF Trainer / DeepSpeed keep):

- HF Trainer's ``create_optimizer`` makes two groups (transformers ``Trainer.get_decay_parameter_names``:
  names with ``bias`` / ``norm`` and ``nn.LayerNorm`` weights get no decay): decay = every weight matrix and
  embedding, no-decay = biases and norm weights, each in ``named_parameters`` order. (A DeepSpeed config with
  an ``optimizer`` block makes transformers pass ``DummyOptim(model.parameters())``: one group, ``groups=1``.)
- A VLM is laid out as transformers' ``LlavaModel`` registers it: vision tower(s), projector, language model,
  lm_head. A ViT tower is modelled as one leading tensor (patch/position embeddings: what its layers leave of
  ``num_params``) and per layer q, k, v, o (h x h), fc1 (h x i), fc2 (i x h), their biases and two norms.
- The decoder, per transformers ``LlamaForCausalLM`` module order: ``embed_tokens``, per layer the attention
  projections (q, k, v, o, or the model's own ``AttentionSpec.linears``), the MLP (``DecoderSpec.layer_linears``;
  MoE experts as transformers 5's fused 3-D ``gate_up_proj`` (E x 2i x h) and ``down_proj``), then the
  layer's norms; the final norm; ``lm_head`` (absent when tied). Each layer's norms are separate tensors of
  ``norm_numel_per_norm``; attention's q/k norms count as one tensor.
- LoRA: per adapted linear (and copy) ``lora_A`` (r x d_in) then ``lora_B`` (d_out x r), both decay.

Only the plain data-parallel layout is modelled (tp = pp = ep = 1); otherwise the caller keeps Ψ/N.
"""

from __future__ import annotations

from bisect import bisect_right
from functools import lru_cache

from ..model import ModelSpec, Part
from ..scenario import Method, Scenario
from ..units import ceil_div

ALIGNMENT_FACTOR = 2
"""``nccl_start_alignment_factor`` (stage_1_and_2.py): each group is padded to a multiple of 2 x world elements."""


@lru_cache(maxsize=256)
def param_groups(model: ModelSpec, method: Method, lora_names: frozenset[str], lora_r: int,
                 trains: frozenset[Part], groups: int = 2) -> tuple[tuple[int, ...], ...]:
    """Element counts of the trainable parameters per optimizer group, in ``named_parameters`` order
    (module docstring). ``groups=2``: (decay, no-decay); ``groups=1``: one group."""
    decay: list[int] = []
    nodecay: list[int] = []
    order: list[tuple[bool, int]] = []  # (is_decay, numel) in named_parameters order

    def add(numel: int, is_decay: bool) -> None:
        if numel > 0:
            order.append((is_decay, numel))

    lora = method in (Method.LORA, Method.QLORA)
    for tower in model.towers:
        part = Part(tower.name) if tower.name in {p.value for p in Part} else Part.VISION
        if part not in trains:
            continue
        h, i, n_layers = tower.hidden_size, tower.intermediate_size, tower.num_layers
        per_layer = 4 * (h * h + h) + (h * i + i) + (i * h + h) + 4 * h
        if h and i and n_layers and n_layers * per_layer <= tower.num_params:
            add(tower.num_params - n_layers * per_layer, True)
            for _ in range(n_layers):
                for d_in, d_out in ((h, h), (h, h), (h, h), (h, h), (h, i), (i, h)):
                    add(d_in * d_out, True)
                    add(d_out, False)
                add(2 * h, False)
                add(2 * h, False)
        else:
            add(tower.num_params, True)
    if Part.PROJECTOR in trains:
        for c in model.connectors:
            for lin in c.linears:
                for _ in range(lin.count):
                    add(lin.weight_numel, True)
                    add(lin.d_out if lin.bias else 0, False)
            add(c.norm_numel, False)
    dec = model.decoder
    llm = Part.LLM in trains and not lora
    if llm:
        add(dec.embedding_numel, True)
    for index in range(dec.num_layers):
        linears = dec.layer_linears(index)
        if lora:
            for lin in linears:
                if lin.name in lora_names:
                    for _ in range(lin.count):
                        add(lora_r * lin.d_in, True)
                        add(lin.d_out * lora_r, True)
            continue
        if not llm:
            continue
        fused = fused_bias = 0
        for lin in linears:
            if lin.expert:
                if dec.moe is not None and lin.name == dec.moe.expert_names[2]:
                    add(fused, True)
                    add(fused_bias, False)
                    fused = fused_bias = 0
                    add(lin.count * lin.weight_numel, True)
                    add(lin.count * lin.d_out if lin.bias else 0, False)
                else:
                    fused += lin.count * lin.weight_numel
                    fused_bias += lin.count * lin.d_out if lin.bias else 0
                continue
            add(lin.weight_numel, True)
            add(lin.d_out if lin.bias else 0, False)
        add(fused, True)
        add(fused_bias, False)
        add(dec.attention.norm_numel(), False)
        if dec.is_moe_layer(index) and dec.moe is not None:
            add(dec.moe.router_bias_numel, False)
        for _ in range(dec.norms_per_layer):
            add(dec.norm_numel_per_norm, False)
    if llm:
        add(dec.norm_numel_per_norm, False)
        add(dec.lm_head_numel, True)
    for is_decay, numel in order:
        (decay if is_decay or groups == 1 else nodecay).append(numel)
    return tuple(g for g in (tuple(decay), tuple(nodecay)) if g)


@lru_cache(maxsize=1024)
def group_partitions(sizes: tuple[int, ...], world: int) -> tuple[int, ...]:
    """``grads_in_partition`` elements each rank holds for one group: the numel of every parameter that starts
    in the rank's partition or straddles its start (stage_1_and_2.py ``get_partition_info``)."""
    total = sum(sizes)
    padded = ceil_div(total, ALIGNMENT_FACTOR * world) * ALIGNMENT_FACTOR * world
    part = padded // world
    starts: list[int] = []
    offset = 0
    for s in sizes:
        starts.append(offset)
        offset += s
    out = []
    for r in range(world):
        lo, hi = r * part, (r + 1) * part
        first = bisect_right(starts, lo) - 1  # the parameter holding element ``lo`` (or the last one before it)
        if first >= 0 and starts[first] + sizes[first] <= lo:
            first += 1  # it ends before the partition: not in it
        last = bisect_right(starts, hi - 1)  # parameters starting before ``hi``
        first = max(first, 0)
        out.append(sum(sizes[first:last]) if last > first else 0)
    return tuple(out)


@lru_cache(maxsize=1024)
def _max_rank(groups: tuple[tuple[int, ...], ...], world: int) -> int:
    per_rank = [0] * world
    for g in groups:
        for r, v in enumerate(group_partitions(g, world)):
            per_rank[r] += v
    return max(per_rank)


def zero12_grad_partition(scn: Scenario, trainable: int, world: int) -> int:
    """Elements of ``grads_in_partition`` on the most loaded of ``world`` ranks (module docstring).

    Falls back to Ψ/N (``ceil(trainable / world)``) under tensor, pipeline or expert parallelism. When the
    modelled layout does not add up to ``trainable`` (a part this module does not lay out), the layout's
    boundary excess is added to Ψ/N."""
    base = ceil_div(trainable, world)
    par = scn.parallel
    if world <= 1 or par.tp > 1 or par.pp > 1 or par.ep > 1 or trainable == 0:
        return base
    method = scn.train.method
    lora_names = frozenset(scn.lora_linear_names()) if method in (Method.LORA, Method.QLORA) else frozenset()
    trains = frozenset(p for p in Part if scn.trains(p))
    groups = param_groups(scn.model, method, lora_names, scn.train.lora.r, trains)
    most = _max_rank(groups, world)
    total = sum(sum(g) for g in groups)
    if total == trainable:
        return most
    return base + max(0, most - ceil_div(total, world))
