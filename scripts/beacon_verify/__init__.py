"""Helpers of scripts/verify_receipt.py: RFC 9162 checks, C2SP notes and cosignatures, the audit.

Standalone on purpose, like the script: the standard library, PyNaCl and rfc8785 only, and
nothing from the portal's code, so a third party can read them and run them alone.
"""
