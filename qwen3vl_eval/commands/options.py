"""The Typer option declarations the commands share (`run`, `score`, `bench`, `generate`, ...), each written once:
a command names them as annotations (`device: opt.Device = "auto"`), so a flag has one spelling and one help
text everywhere. Options of one command only live here too when that command's module is long (`run`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qwen3vl_eval.checkpoints.hub import TINY_NAMES

MODEL_HELP = ("Checkpoint folder, Hub id org/name or org/name@revision in the local HF cache, or a tiny "
              f"random checkpoint: {', '.join(TINY_NAMES)}.")

# model and device (every command that runs a model)
Model = Annotated[str, typer.Option(
    "--model", help=MODEL_HELP)]
Device = Annotated[str, typer.Option(
    "--device", help="auto, cpu, cuda or cuda:N.")]
Dtype = Annotated[str, typer.Option(
    "--dtype", help="auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16 or float16.")]
VideoPrompt = Annotated[str, typer.Option(
    "--video-prompt", help="trained (timestamped frame groups, as trained) or transformers5.")]

# tasks and their data (run, score)
Task = Annotated[str, typer.Option(
    "--task", help="Task or suite names, comma separated (see `qwen3vl-eval tasks`).")]
Data = Annotated[str, typer.Option(
    "--data", help="Local copy of the task's data (parquet, JSONL, HF folder) or Hub id org/name@rev.")]
MediaRoot = Annotated[Path, typer.Option(
    "--media-root", help="Folder the videos resolve against.")]
Limit = Annotated[int, typer.Option(
    "--limit", help="First N samples of each task: for testing only, not a benchmark score.")]
RunOutput = Annotated[Path, typer.Option(
    "--output", help="Run folder, a subfolder per task (default reports/runs/<timestamp>-<model>/).")]

ModelArgs = Annotated[str, typer.Option(
    "--model-args", metavar="KEY=VALUE,...", help="lm-eval style, onto these options: dtype=bfloat16,fps=2,...")]
IncludePath = Annotated[list[Path], typer.Option(
    "--include-path", metavar="DIR", help="A folder of your own task YAML files, besides tasks/ (repeatable).")]

# generation (run, generate)
MaxNewTokens = Annotated[int, typer.Option(
    "--max-new-tokens", help="Most tokens generated per reply (run: overrides every task's).")]
Seed = Annotated[int, typer.Option(
    "--seed", help="Sampling seed (default: the recipe's, else 0).")]
Temperature = Annotated[float, typer.Option(
    "--temperature", help="0 is greedy.")]
TopP = Annotated[float, typer.Option(
    "--top-p", help="Nucleus sampling: the smallest token set holding this probability.")]
TopK = Annotated[int, typer.Option(
    "--top-k", help="Sample among the K most likely tokens; 0 is off.")]
PresencePenalty = Annotated[float, typer.Option(
    "--presence-penalty", help="Subtracted from the logits of tokens already generated.")]
RepetitionPenalty = Annotated[float, typer.Option(
    "--repetition-penalty", help="Divides the positive logits of tokens seen (1 is off).")]

# media budgets (run)
Fps = Annotated[float, typer.Option(
    "--fps", help="Video frames per second sampled (qwen-vl-utils).")]
MaxFrames = Annotated[int, typer.Option(
    "--max-frames", help="Most video frames sampled.")]
MinPixels = Annotated[int, typer.Option(
    "--min-pixels", help="Least pixels per image / video frame.")]
MaxPixels = Annotated[int, typer.Option(
    "--max-pixels", help="Most pixels per image / video frame.")]
TotalPixels = Annotated[int, typer.Option(
    "--total-pixels", help="Pixel budget of a whole video clip.")]

# run only
BatchSize = Annotated[int, typer.Option(
    "--batch-size", help="Conversations generated together (default 1; openai: --concurrency).")]
Resume = Annotated[bool, typer.Option(
    "--resume", help="Continue the run in --output (default: this model's latest), skipping done samples.")]
Recipe = Annotated[str, typer.Option(
    "--recipe", help="Generation recipe: greedy (default), qwen-instruct, qwen-thinking or checkpoint.")]
Seeds = Annotated[int, typer.Option(
    "--seeds", help="Repeat a sampled run with N seeds (seed, seed+1, ...); report mean and spread.")]
SampleTimeout = Annotated[float, typer.Option(
    "--sample-timeout", help="Seconds a batch may take; past it its samples are logged as errors.")]
Backend = Annotated[str, typer.Option(
    "--backend", help="native (this package), hf (transformers, golden extra) or openai (a server).")]

# the openai backend (run); refused with the local backends (commands/backend_options.py)
BaseUrl = Annotated[str, typer.Option(
    "--base-url", help="openai: the server, e.g. http://127.0.0.1:8000/v1.")]
ApiKeyEnv = Annotated[str, typer.Option(
    "--api-key-env", help="openai: environment variable holding the API key (never recorded).")]
ServedModelName = Annotated[str, typer.Option(
    "--served-model-name", help="openai: the model name the server knows (default: --model).")]
Concurrency = Annotated[int, typer.Option(
    "--concurrency", help="openai: requests in flight (4).")]
RequestTimeout = Annotated[float, typer.Option(
    "--request-timeout", help="openai: seconds per request attempt (120).")]
Retries = Annotated[int, typer.Option(
    "--retries", help="openai: retries of a failed request (3).")]
VideoMode = Annotated[str, typer.Option(
    "--video-mode", help="openai: frames (sampled here, sent as images; default) or url.")]
VideoUrlScheme = Annotated[str, typer.Option(
    "--video-url-scheme", help="openai, --video-mode url: data (in the request; default) or file.")]

# the LLM judge of tasks with a `judge:` block (run, score; README "LLM judges", eval/judge.py)
JudgeBaseUrl = Annotated[str, typer.Option(
    "--judge-base-url", help="An OpenAI-compatible server for the tasks' LLM-judged metrics (*_judged).")]
JudgeModel = Annotated[str, typer.Option(
    "--judge-model", help="The judge model the server serves (default: each task's judge model).")]
JudgeApiKeyEnv = Annotated[str, typer.Option(
    "--judge-api-key-env", help="Environment variable holding the judge server's API key (never recorded).")]
JudgeCache = Annotated[Path, typer.Option(
    "--judge-cache", help="Folder of cached judge answers (default $QWEN3VL_EVAL_CACHE/judge).")]
