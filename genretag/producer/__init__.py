"""The producer: walk library roots, diff against the database, and get the changed tracks classified."""

from genretag.producer.scan import ScanCounts, ScanRefused, ScanSummary, scan

__all__ = ["ScanCounts", "ScanRefused", "ScanSummary", "scan"]
