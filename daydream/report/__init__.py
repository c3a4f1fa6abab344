"""Outputs people read: terminal tables, the Perfetto/Chrome trace export, HTML reports."""
