"""The statistics source: V3 exporter and v1 lists (exports-spec.md §3)."""
