"""Serve a GGUF model over llama.cpp's OpenAI-compatible HTTP server (xllamacpp).

xllamacpp has no command-line entry point; this is it. Used by the test suite (one process per
endpoint, stopped by PID) and usable on a model box:

    python ops/llm/serve.py --model SmolLM2-135M-Instruct.Q4_1.gguf --port 8081 \
        --chat-template ops/llm/chatml-tools.jinja

Prints one line `listening http://HOST:PORT` once the model is loaded, then serves until SIGTERM
or SIGINT. Binds to 127.0.0.1 unless told otherwise.
"""

import argparse
import os
import signal
import sys
import threading

import xllamacpp as xlc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="path to a .gguf model file")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--alias", default="smollm2", help="model name the server answers to")
    ap.add_argument("--ctx", type=int, default=4096, help="context window in tokens")
    ap.add_argument("--parallel", type=int, default=1, help="server slots")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chat-template", help="file with a Jinja chat template (tool-capable)")
    ap.add_argument("--api-key-env", help="name of an environment variable holding the API key clients must send")
    args = ap.parse_args()

    p = xlc.CommonParams()
    p.model.path = args.model
    p.n_ctx = args.ctx
    p.n_parallel = args.parallel
    p.hostnames = [args.host]
    p.port = args.port
    p.use_jinja = True
    p.endpoint_metrics = True
    p.endpoint_slots = True
    p.cpuparams.n_threads = args.threads
    p.cpuparams_batch.n_threads = args.threads
    p.model_alias = {args.alias}
    if args.api_key_env:
        p.api_keys = [os.environ[args.api_key_env]]
    if args.chat_template:
        with open(args.chat_template, encoding="utf-8") as f:
            p.chat_template = f.read()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server = xlc.Server(p)
    print(f"listening http://{args.host}:{args.port}", flush=True)
    stop.wait()
    del server
    return 0


if __name__ == "__main__":
    sys.exit(main())
