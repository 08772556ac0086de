"""The comparison wing: how one model's answers differ between regions (SPEC section 8).

`rules` holds the classifier's rules as data, `classifier` applies them to one answer,
`similarity` measures how alike two answers are, `comparison` builds a job's comparison and
its CSV, and `report` computes and caches a stored job's comparison. The pure functions are
importable from here.
"""

from .classifier import CLASSES as CLASSES
from .classifier import classify as classify
from .classifier import classify_detail as classify_detail
from .comparison import CSV_COLUMNS as CSV_COLUMNS
from .comparison import DIFFERS_THRESHOLD as DIFFERS_THRESHOLD
from .comparison import SemanticUnavailable as SemanticUnavailable
from .comparison import compare_job as compare_job
from .comparison import comparison_csv as comparison_csv
from .comparison import unified_diff as unified_diff
from .comparison import word_diff as word_diff
from .similarity import edit_similarity as edit_similarity
from .similarity import lexical_similarity as lexical_similarity
from .similarity import semantic_available as semantic_available
from .similarity import semantic_similarity as semantic_similarity
from .similarity import token_similarity as token_similarity
