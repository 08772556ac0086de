"""Provider calls: one prompt to one model in one region, over HTTP or on this machine.

`call()` returns a `ProviderResult` or raises `ProviderError`. The HTTP kinds live in `http`,
the local llama.cpp kind in `local`, the shared types in `common`.
"""

from .common import ProviderError as ProviderError
from .common import ProviderResult as ProviderResult
from .http import MAX_BODY_BYTES as MAX_BODY_BYTES
from .http import call as call
from .http import local_model_loaded as local_model_loaded
