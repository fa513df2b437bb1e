"""The checkpoint's tokenizer: `tokenizer.json` through the `tokenizers` library, with the added and special
tokens of `tokenizer_config.json`, behaving as transformers' `Qwen2Tokenizer` does for Qwen checkpoints
(no BOS/EOS added on encode, no clean-up of spaces on decode)."""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import AddedToken
from tokenizers import Tokenizer as _RustTokenizer

from qwen3vl_eval.errors import CheckpointError


def _token_text(value: object) -> str | None:
    """A special-token entry of tokenizer_config.json: a string, an AddedToken dict, or null."""
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


class Tokenizer:
    """Byte-level BPE tokenizer of a checkpoint folder."""

    def __init__(self, tokenizer: _RustTokenizer, config: dict | None = None):
        self._tok = tokenizer
        self.config = dict(config or {})
        self._add_config_tokens()
        self.eos_token = _token_text(self.config.get("eos_token"))
        self.pad_token = _token_text(self.config.get("pad_token"))
        self.bos_token = _token_text(self.config.get("bos_token"))
        self.unk_token = _token_text(self.config.get("unk_token"))
        self.eos_token_id = self.token_to_id(self.eos_token) if self.eos_token else None
        self.pad_token_id = self.token_to_id(self.pad_token) if self.pad_token else None
        self.bos_token_id = self.token_to_id(self.bos_token) if self.bos_token else None

    @classmethod
    def from_pretrained(cls, path: str | Path) -> Tokenizer:
        """Load `tokenizer.json` (+ `tokenizer_config.json` when present) from a checkpoint folder."""
        path = Path(path)
        tok_file = path / "tokenizer.json"
        if not tok_file.is_file():
            raise CheckpointError(f"{path}: no tokenizer.json (the processor needs the checkpoint tokenizer)")
        try:
            tok = _RustTokenizer.from_file(str(tok_file))
        except Exception as e:  # the Rust error names the JSON problem
            raise CheckpointError(f"{tok_file}: cannot load tokenizer: {e}") from None
        config = {}
        cfg_file = path / "tokenizer_config.json"
        if cfg_file.is_file():
            try:
                config = json.loads(cfg_file.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise CheckpointError(f"{cfg_file}: invalid JSON: {e}") from None
        return cls(tok, config)

    def _add_config_tokens(self) -> None:
        """Register the added tokens of tokenizer_config.json that tokenizer.json lacks, and mark the named
        special tokens (eos, pad, additional_special_tokens, ...) as special, as transformers does."""
        special_names = {_token_text(self.config.get(k)) for k in ("bos_token", "eos_token", "pad_token",
                                                                   "unk_token")}
        special_names |= {_token_text(t) for t in self.config.get("additional_special_tokens") or []}
        special_names.discard(None)
        known = self._tok.get_added_tokens_decoder().values()
        known_contents = {t.content for t in known}
        known_special = {t.content for t in known if t.special}
        decoder = self.config.get("added_tokens_decoder") or {}
        for _, entry in sorted(decoder.items(), key=lambda kv: int(kv[0])):
            content = entry.get("content")
            if not content or content in known_contents:
                continue
            token = AddedToken(content, single_word=entry.get("single_word", False),
                               lstrip=entry.get("lstrip", False), rstrip=entry.get("rstrip", False),
                               normalized=entry.get("normalized", not entry.get("special", False)),
                               special=entry.get("special", False))
            if entry.get("special", False):
                self._tok.add_special_tokens([token])
            else:
                self._tok.add_tokens([token])
        missing = [t for t in special_names - known_special if t]
        if missing:
            self._tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                          for t in sorted(missing)])

    # ------------------------------------------------------------------------------------------ API
    @property
    def vocab_size(self) -> int:
        """Number of ids, added tokens included."""
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (special tokens written in the text are recognised; nothing is added)."""
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """`encode` for several texts at once (parallel in the Rust library)."""
        return [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        """Text of `ids`; special tokens (not `<think>` and other plain added tokens) dropped by default."""
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        """Id of one token string, or None."""
        return self._tok.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        """Token string of one id, or None."""
        return self._tok.id_to_token(int(token_id))

    @property
    def special_tokens_map(self) -> dict[str, str]:
        """The named special tokens that are set, as chat templates receive them."""
        names = {"bos_token": self.bos_token, "eos_token": self.eos_token, "unk_token": self.unk_token,
                 "pad_token": self.pad_token}
        return {k: v for k, v in names.items() if v is not None}

    @property
    def chat_template(self) -> str | list | None:
        """The `chat_template` entry of tokenizer_config.json, if any."""
        return self.config.get("chat_template")
