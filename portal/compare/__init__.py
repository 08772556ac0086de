"""The comparison wing: how one model's answers differ between regions and languages (SPEC
sections 8 and 11).

`rules` holds the classifier's rules as data, `classifier` applies them to one answer,
`similarity` measures how alike two answers are, `comparison` builds a job's comparison (with
`languages` across languages and `controls` the yardstick), `comparison_csv` its CSV,
`framing` counts framing terms, `report` computes and caches a stored job's comparison, and
`history` follows a question's answers across jobs. The pure functions are importable from
here.

May import: the top-level modules only. Never flask.
"""

from portal.compare.classifier import CLASSES as CLASSES
from portal.compare.classifier import classify as classify
from portal.compare.classifier import classify_detail as classify_detail
from portal.compare.comparison import DIFFERS_THRESHOLD as DIFFERS_THRESHOLD
from portal.compare.comparison import SemanticUnavailable as SemanticUnavailable
from portal.compare.comparison import compare_job as compare_job
from portal.compare.comparison import unified_diff as unified_diff
from portal.compare.comparison import word_diff as word_diff
from portal.compare.comparison_csv import CSV_COLUMNS as CSV_COLUMNS
from portal.compare.comparison_csv import comparison_csv as comparison_csv
from portal.compare.similarity import edit_similarity as edit_similarity
from portal.compare.similarity import lexical_similarity as lexical_similarity
from portal.compare.similarity import semantic_available as semantic_available
from portal.compare.similarity import semantic_similarity as semantic_similarity
from portal.compare.similarity import token_similarity as token_similarity
