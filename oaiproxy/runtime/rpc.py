"""llama.cpp's RPC backend: ``ggml-rpc-server`` lends a machine's CPU (or GPU) to a llama-server elsewhere.

One model larger than one machine runs as one llama-server started with ``--rpc host:port,...`` (oaiproxy's
``--rpc``), which puts part of the model's layers on each ``ggml-rpc-server``. The proxy does nothing per
request for it: llama-server splits the work. This module finds the ``ggml-rpc-server`` built beside the
llama-server oaiproxy runs (the Makefile builds llama.cpp with ``GGML_RPC=ON``) and runs it, so a second
machine with oaiproxy installed starts one with ``python -m oaiproxy.runtime.rpc -H 0.0.0.0 -p 50052``.

llama.cpp calls the RPC protocol unauthenticated and unencrypted: bind it to a private network only.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from oaiproxy.runtime.llama_server import ServerNotFoundError, find_server_binary

RPC_BINARY = "ggml-rpc-server"


def find_rpc_server_binary(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``ggml-rpc-server`` in the folder of the llama-server oaiproxy would run, else on PATH."""
    try:
        beside = find_server_binary(explicit).with_name(RPC_BINARY)
    except ServerNotFoundError:
        beside = None
    if beside is not None and beside.is_file() and os.access(beside, os.X_OK):
        return beside
    on_path = shutil.which(RPC_BINARY)
    if on_path:
        return Path(on_path)
    raise ServerNotFoundError(f"no {RPC_BINARY} beside llama-server or on PATH: build llama.cpp with "
                              "-DGGML_RPC=ON (`make setup` does)")


def main(argv: list[str]) -> None:
    """Run ``ggml-rpc-server`` with ``argv`` in this process (its options: ``-H HOST -p PORT -t THREADS``)."""
    binary = find_rpc_server_binary()
    os.execv(binary, [str(binary), *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
