from qwen3vl_eval.cli import app

if __name__ == "__main__":
    app()
