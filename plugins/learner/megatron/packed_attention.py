"""Core attention for packed sequences (THD) with Megatron's local layer spec.

Megatron-core's local ``DotProductAttention`` refuses ``PackedSeqParams`` (only Transformer
Engine's attention takes the THD layout). :class:`PackedDotProductAttention` is a drop-in
subclass: given THD inputs (``query [t, heads, d]``, ``key``/``value [t, kv heads, d]``, the
documents' boundaries in ``packed_seq_params.cu_seqlens_q``) it runs PyTorch's
``scaled_dot_product_attention`` causally on each document on its own and concatenates the
outputs, which is exactly the attention each document gets in a padded batch: no score crosses
a document boundary, no padding is computed, and memory is linear in the document length where
SDPA's fused (flash / memory-efficient) kernels run, on CPU and GPU alike. Without
``packed_seq_params`` it is Megatron's own ``DotProductAttention``.

Where Transformer Engine is installed on a GPU the learner uses TE's layer spec instead, whose
attention takes THD natively (variable-length flash attention).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from megatron.core.transformer.dot_product_attention import DotProductAttention


class PackedDotProductAttention(DotProductAttention):
    """``DotProductAttention`` that also takes packed (THD) documents, one SDPA per document."""

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        attn_mask_type: Any = None,
        attention_bias: torch.Tensor | None = None,
        packed_seq_params: Any = None,
    ) -> torch.Tensor:
        if packed_seq_params is None:
            return super().forward(
                query, key, value, attention_mask, attn_mask_type, attention_bias, None
            )
        if packed_seq_params.qkv_format != "thd":
            raise ValueError(
                f"packed attention takes qkv_format 'thd', not {packed_seq_params.qkv_format}"
            )
        if attention_bias is not None:
            raise ValueError("packed attention takes no attention bias")
        cu = packed_seq_params.cu_seqlens_q.tolist()
        lengths = [b - a for a, b in zip(cu[:-1], cu[1:], strict=True)]
        groups = self.num_attention_heads_per_partition // self.num_query_groups_per_partition
        outputs = []
        # split, not slices: the backward of a split is one concatenation, while each
        # slice's backward would add a zero-filled full-length gradient
        for q, k, v in zip(
            query.split(lengths), key.split(lengths), value.split(lengths), strict=True
        ):
            # [L, heads, d] -> [1, heads, L, d]
            q, k, v = (x.transpose(0, 1).unsqueeze(0) for x in (q, k, v))
            if groups > 1:
                k = k.repeat_interleave(groups, dim=1)
                v = v.repeat_interleave(groups, dim=1)
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.softmax_scale)
            outputs.append(out.squeeze(0).transpose(0, 1))  # [L, heads, d]
        out = torch.cat(outputs, dim=0)
        return out.reshape(out.shape[0], -1)  # [t, heads * d], as Megatron's THD path expects
