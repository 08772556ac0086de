"""Watching over time (SPEC section 12): schedules, changes between runs, the feed, webhooks.

`config` reads the `[schedules.<name>]` and `[watch]` tables, `models` holds the watch's tables,
`schedules` submits a schedule's job once per slot (a unique slot row, not a timer), `changes`
compares each ended job's answers with the newest earlier ones and stores what changed, `scans`
claims ended jobs for that comparison, `listing` pages the stored changes, `feed` writes them as
Atom, `webhooks` delivers each change as a signed Standard Webhooks POST, and `loop` is the
greenlet that does all of it in each worker process.

May import: the top-level modules, `intake` (a schedule's job is submitted like any other),
`engine`, `compare` (how alike two answers are) and `judge` (its labels). Never flask.
"""
