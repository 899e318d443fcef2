"""Dashboards as code on the gold layer (the QuickSight stand-in)."""
