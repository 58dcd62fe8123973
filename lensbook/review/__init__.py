"""Incident review: postmortem notebooks written from run records (`postmortem`), and what
their cells display (`show`)."""

from __future__ import annotations

from lensbook.review.builder import Postmortem, PostmortemError, export_html, postmortem

__all__ = ["Postmortem", "PostmortemError", "export_html", "postmortem"]
