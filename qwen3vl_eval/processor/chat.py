"""Chat templates: the checkpoint's own Jinja template, rendered the way transformers renders it (sandboxed
Jinja with trim_blocks and lstrip_blocks, loop controls, a `tojson` that keeps non-ASCII, `raise_exception`,
`strftime_now`, the named special tokens as variables)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from qwen3vl_eval.errors import CheckpointError, ProcessorError

_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


def load_chat_template(path: str | Path, tokenizer_config: dict | None = None) -> str | None:
    """The checkpoint's chat template, in transformers' order of precedence: `chat_template.json`, then
    `chat_template.jinja`, then the `chat_template` entry of tokenizer_config.json. A list of named templates
    yields the one named "default"."""
    path = Path(path)
    template: Any = None
    if (path / "chat_template.json").is_file():
        try:
            template = json.loads((path / "chat_template.json").read_text(encoding="utf-8"))["chat_template"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise CheckpointError(f"{path / 'chat_template.json'}: no usable chat_template ({e})") from None
    elif (path / "chat_template.jinja").is_file():
        template = (path / "chat_template.jinja").read_text(encoding="utf-8")
    elif tokenizer_config:
        template = tokenizer_config.get("chat_template")
    if isinstance(template, list):  # [{"name": ..., "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) else None


class _GenerationTag(jinja2.ext.Extension):
    """Accept `{% generation %}...{% endgeneration %}` blocks (assistant-mask markers); render the body."""

    tags = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller: Any) -> str:
        return caller()


class _Namespace(jinja2.utils.Namespace):
    """`namespace()` that refuses underscore attributes, as in transformers' sandbox."""

    def __init__(*args: Any, **kwargs: Any) -> None:  # noqa: N805 - jinja's Namespace signature trick
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _Namespace._check(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _Namespace._check(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"chat templates cannot set underscore names ({name!r})")


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None,
            sort_keys: bool = False) -> str:
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


@lru_cache(maxsize=16)
def compile_template(source: str) -> jinja2.Template:
    """Compile a chat template once (cached by its text)."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[_GenerationTag, jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    env.globals["dict"] = dict
    env.globals["namespace"] = _Namespace
    try:
        return env.from_string(source)
    except jinja2.exceptions.TemplateSyntaxError as e:
        raise CheckpointError(f"chat template does not parse: {e}") from None


def plain_data(value: Any) -> Any:
    """What a template may see of a value: JSON-like data; any other object (a PIL image, an array) becomes
    the inert string "<TypeName>", so media keys stay present without exposing the objects."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, Mapping):
        return {plain_data(k): plain_data(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_data(v) for v in value]
    if isinstance(value, tuple):
        return tuple(plain_data(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy / torch scalars
        return plain_data(value.item())
    return f"<{type(value).__name__}>"


def _alias_reasoning(messages: list[dict]) -> list[dict]:
    """Copy a message's reasoning under `reasoning_content` and `thinking`, whichever name it came in."""
    out = []
    for m in messages:
        reasoning = next((m[k] for k in _REASONING_FIELDS if m.get(k) is not None), None)
        if reasoning is not None:
            m = {"thinking": reasoning, **m, "reasoning_content": reasoning}
        out.append(m)
    return out


def split_reasoning(text: str) -> tuple[str | None, str]:
    """A Thinking reply read back as the chat template reads an assistant turn: (reasoning, answer) split at the
    last `</think>`, the reasoning taken after its `<think>` (when there is one) with newlines trimmed, the answer
    with leading newlines dropped (the template's `strip('\\n')` / `lstrip('\\n')`); (None, text) without a
    `</think>`. The one split: backends fill `Reply.reasoning`/`Reply.answer` with it, `score` splits saved
    predictions with it."""
    if "</think>" not in text:
        return None, text
    reasoning, answer = text.rsplit("</think>", 1)
    return reasoning.split("<think>")[-1].strip("\n"), answer.lstrip("\n")


def render_chat(template: str, messages: list[dict], *, add_generation_prompt: bool = True,
                special_tokens: Mapping[str, str] | None = None, tools: list[dict] | None = None,
                documents: list[dict] | None = None, **template_kwargs: Any) -> str:
    """Render one conversation with `template`. Extra keyword arguments (e.g. `add_vision_id=True`) become
    template variables; the named special tokens are variables too, overridable by keyword."""
    compiled = compile_template(template)
    variables = plain_data({**(special_tokens or {}), **template_kwargs})
    try:
        return compiled.render(messages=_alias_reasoning(plain_data(list(messages))), tools=plain_data(tools),
                               documents=plain_data(documents), add_generation_prompt=add_generation_prompt,
                               **variables)
    except jinja2.exceptions.TemplateError as e:
        raise ProcessorError(f"chat template rejected the conversation: {e}") from None
