"""Provider calls: one prompt to one model in one region, over HTTP or on this machine.

`call()` returns a `ProviderResult` or raises `ProviderError`. The HTTP exchange lives in
`http`, one small module per wire format (`openai`, `ollama`, `anthropic`), the local llama.cpp
kind in `local`, the shared types in `common`, kept-alive connections in `http_pool`, what a
provider said about itself in `served_by`, and `check` asks each configured region and model
one short prompt (`flask beacon regions check`).

May import: the top-level modules only. Never flask.
"""

from portal.providers.common import ProviderError as ProviderError
from portal.providers.common import ProviderResult as ProviderResult
from portal.providers.http import MAX_BODY_BYTES as MAX_BODY_BYTES
from portal.providers.http import call as call
from portal.providers.http import local_model_loaded as local_model_loaded
