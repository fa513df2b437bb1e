"""Sparse mixture-of-experts MLP of the Qwen3-VL MoE decoder (model_type `qwen3_vl_moe`).

Reference: transformers 5.23 `models/qwen3_vl_moe/modeling_qwen3_vl_moe.py` (`Qwen3VLMoeTextSparseMoeBlock`);
research/qwen3vl_spec.md section 3. Router: softmax in fp32 over all experts, top-k, renormalise, cast back.
No shared expert. Expert weights stay in the released checkpoint layout (transformers transposes them at
load; we do not): gate_up_proj [E, Hd, 2I] with gate in the first I columns, down_proj [E, I, Hd].

Dispatch sorts the T*K (token, expert) assignments by expert. Few assignments (decode): the chosen experts'
weights are gathered and applied in one batched matmul, with no host sync. Many (prefill): the sorted tokens are
split per expert and each expert that received tokens runs one matmul.

Legend: T tokens, Hd hidden size, E experts, K experts per token, I expert width, A = T*K assignments.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qwen3vl_eval.model.config import TextConfig


class SparseMoeBlock(nn.Module):
    def __init__(self, config: TextConfig) -> None:
        super().__init__()
        self.top_k = config.num_experts_per_tok
        self.gate = nn.Linear(config.hidden_size, config.num_experts, bias=False)  # the router
        self.experts = Experts(config)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])  # [T, Hd]
        logits = self.gate(x)  # [T, E]
        probs = F.softmax(logits, dim=-1, dtype=torch.float32)  # [T, E] fp32
        weights, experts = torch.topk(probs, self.top_k, dim=-1)  # [T, K]
        weights = (weights / weights.sum(dim=-1, keepdim=True)).to(logits.dtype)
        return self.experts(x, experts, weights).view(shape)


class Experts(nn.Module):
    def __init__(self, config: TextConfig) -> None:
        super().__init__()
        E, Hd, I = config.num_experts, config.hidden_size, config.moe_intermediate_size
        self.num_experts = E
        self.gate_up_proj = nn.Parameter(torch.empty(E, Hd, 2 * I))
        self.down_proj = nn.Parameter(torch.empty(E, I, Hd))

    def forward(self, x: Tensor, experts: Tensor, weights: Tensor) -> Tensor:
        """x [T, Hd], experts and weights [T, K] -> sum_k weights[:, k] * expert_k(x) [T, Hd]."""
        T, K = experts.shape
        order = experts.flatten().argsort(stable=True)  # [A] assignments sorted by expert
        token = order // K  # [A] token of each sorted assignment
        expert = experts.flatten()[order]  # [A]
        xs = x[token]  # [A, Hd]
        if T * K <= self.num_experts:  # few assignments: gather the weights, one batched matmul
            gate_up = torch.bmm(xs[:, None], self.gate_up_proj[expert]).squeeze(1)  # [A, 2I]
            y = self._down(gate_up, lambda h: torch.bmm(h[:, None], self.down_proj[expert]).squeeze(1))
        else:  # many: one matmul per expert that has tokens
            counts = torch.bincount(expert, minlength=self.num_experts).tolist()
            parts = []
            for e, chunk in enumerate(xs.split(counts)):
                if counts[e]:
                    parts.append(self._down(chunk @ self.gate_up_proj[e], lambda h, e=e: h @ self.down_proj[e]))
            y = torch.cat(parts)  # [A, Hd]
        y = y * weights.flatten()[order, None]  # [A, Hd]
        # Sum per token; index_add visits assignments in expert order, as the reference's per-expert loop does.
        return torch.zeros_like(x).index_add_(0, token, y.to(x.dtype))

    @staticmethod
    def _down(gate_up: Tensor, down) -> Tensor:
        gate, up = gate_up.chunk(2, dim=-1)  # [A, I] each
        return down(F.silu(gate) * up)
