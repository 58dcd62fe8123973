"""Incident review: postmortem notebooks written from run records (`postmortem`), and what
their cells display (`show`)."""

from __future__ import annotations

from lensbook.review.builder import Postmortem, export_html, postmortem

__all__ = ["Postmortem", "export_html", "postmortem"]
