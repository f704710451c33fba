"""llama.cpp's own OpenAI-compatible HTTP server, serving the built-in model, for the `openai`
provider's tests: `python -m tests.providers.llama_server PORT` with the API key in
LLAMA_SERVER_API_KEY. Prints `listening <url>` once the model is loaded, then serves until killed.
"""

import os
import signal
import sys

import xllamacpp

from apps.providers.local import server_params


def main() -> None:
    port = int(sys.argv[1])
    params = server_params(
        threads=2, context=2048, api_key=os.environ["LLAMA_SERVER_API_KEY"], port=port
    )
    server = xllamacpp.Server(params)
    sys.stdout.write(f"listening {server.listening_address}\n")
    sys.stdout.flush()
    signal.sigwait({signal.SIGTERM, signal.SIGINT})


if __name__ == "__main__":
    main()
