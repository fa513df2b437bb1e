"""Token-level drift of a candidate (an OpenAI-compatible server, or this package's model in another dtype,
device or fast path) against the reference (this package's model, fp32 by default) on a task's real prompts:
`candidates` (the candidate's greedy reply with logprobs), `measure` (per-step agreement and KL against the
reference's teacher-forced scores of the same tokens), `run` (the loop over samples) and `report`
(drift.json, drift.md, gates)."""
