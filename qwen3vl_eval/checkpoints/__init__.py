"""Where checkpoints come from: `--model` resolution (folders, the Hugging Face cache) and tiny random checkpoints."""
